"""Media test helpers: patterned video and tone tracks, recording, correlation, leak census,
hand-driven peers, SDK clients in a room, and the settings of a media hub."""

from __future__ import annotations

import asyncio
import fractions
import gc
import threading
from collections.abc import Callable
from typing import Any

import aioice.ice
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

from commhub.rtc.ice import IcePolicy, policy_scope
from commhub.sdk import RoomClient

LOOPBACK = ("127.0.0.1",)


def media_settings(**extra: Any) -> dict[str, Any]:
    """A hub for media tests: ICE on loopback, no captions or translation (unless asked)."""
    return {"ice_host_addresses": list(LOOPBACK), "captions": False, "translation": False, **extra}


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    n = int(len(x) * dst / src)
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x)


def best_correlation(received: np.ndarray, source: np.ndarray) -> float:
    """Normalised correlation of received against source at the best alignment."""
    n = 1 << int(np.ceil(np.log2(len(received) + len(source))))
    xc = np.fft.irfft(np.fft.rfft(received, n) * np.conj(np.fft.rfft(source, n)), n)
    lag = int(np.argmax(np.abs(xc)))
    if lag > n // 2:
        lag -= n
    # received[i] ~ source[i - lag]
    r0, s0 = max(lag, 0), max(-lag, 0)
    length = min(len(received) - r0, len(source) - s0)
    a, b = received[r0 : r0 + length], source[s0 : s0 + length]
    keep = np.abs(b) > 0.02 * np.abs(b).max()  # compare where the source speaks
    a, b = a[keep], b[keep]
    return float(abs(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


class PatternTrack(MediaStreamTrack):
    """320x240 frames at 30 fps: bright left half with a red block, dark right half."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.pts = 0
        img = np.zeros((240, 320, 3), dtype=np.uint8)
        img[:, :160] = (230, 230, 230)
        img[:, 160:] = (20, 20, 20)
        img[100:140, 60:100] = (0, 0, 255)  # a red block (BGR) inside the bright half
        self.img = img

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(1 / 30)
        frame = VideoFrame.from_ndarray(self.img, format="bgr24")
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, 30)
        self.pts += 1
        return frame


def carries_pattern(frame: VideoFrame) -> bool:
    img = frame.to_ndarray(format="bgr24").astype(int)
    h, w = img.shape[:2]
    left, right = img[:, : w // 2 - 10].mean(), img[:, w // 2 + 10 :].mean()
    by, bx = h * 120 // 240, w * 80 // 320
    block = img[by - 10 : by + 10, bx - 10 : bx + 10]
    b, g, r = block[..., 0].mean(), block[..., 1].mean(), block[..., 2].mean()
    return left > 180 and right < 60 and r > 150 and g < 100 and b < 100


async def collect_audio(track: MediaStreamTrack, seconds: float) -> np.ndarray:
    chunks: list[np.ndarray] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        try:
            async with asyncio.timeout(max(0.1, end - loop.time())):
                frame = await track.recv()
        except (TimeoutError, MediaStreamError):
            break
        arr = frame.to_ndarray().astype(np.float64)
        chans = len(frame.layout.channels)
        chunks.append(arr.reshape(-1, chans).mean(axis=1))
    return np.concatenate(chunks) if chunks else np.zeros(0)


def census() -> dict[str, int]:
    """Live peer connections, asyncio tasks and media threads (for leak checks)."""
    gc.collect()
    pcs = sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection))
    tasks = len([t for t in asyncio.all_tasks() if not t.done()])
    threads = len([t for t in threading.enumerate() if "decoder" in t.name])
    return {"pcs": pcs, "tasks": tasks, "decoder_threads": threads}


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames, paced in real time. Clearing `running` stops it
    delivering frames (as a stuck microphone would) until it is set again."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.t0: float | None = None
        self.running = asyncio.Event()
        self.running.set()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.running.is_set():
            await self.running.wait()
            self.t0 = asyncio.get_running_loop().time() - self.n * 0.02  # pace from now on
        loop = asyncio.get_running_loop()
        self.t0 = self.t0 if self.t0 is not None else loop.time()
        await asyncio.sleep(max(0.0, self.t0 + self.n * 0.02 - loop.time()))
        t = (np.arange(960) + self.n * 960) / 48000
        samples = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.n += 1
        return frame


class RawPeer:
    """A hand-driven aiortc peer connection to the hub, signalled through a RoomClient.

    The RoomClient never made a peer connection of its own, so it leaves offers and
    answers alone; the test shapes the SDP (a chosen track id, mDNS candidates...).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pc = RTCPeerConnection()
        self.policy = IcePolicy(hosts=LOOPBACK)

    async def offer(self, rewrite: Callable[[str], str] = lambda s: s, ref: str = "raw") -> str:
        """Offer (rewritten), apply the hub's answer; returns the SDP that was sent."""
        with policy_scope(self.policy):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = rewrite(self.pc.localDescription.sdp)
        answer = self.client.expect("answer")
        error = self.client.expect("error", ref=ref)
        await self.client.send({"type": "offer", "id": ref, "sdp": sdp})
        done, _ = await asyncio.wait({answer, error}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (answer, error):
            if fut not in done:
                fut.cancel()
        if error in done:
            raise AssertionError(f"offer refused: {error.result()}")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.result()["sdp"], "answer"))
        return sdp

    async def close(self) -> None:
        await self.pc.close()


def sections_offer(count: int, kind: str = "audio", direction: str = "sendonly") -> str:
    """A well-formed offer of `count` small Opus (or VP8) sections, as an attacker writes it."""
    fmt = "111" if kind == "audio" else "96"
    codec = "opus/48000/2" if kind == "audio" else "VP8/90000"
    head = [
        "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
        "a=group:BUNDLE " + " ".join(str(i) for i in range(count)),
        "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
    ]  # fmt: skip
    body = []
    for i in range(count):
        body += [
            f"m={kind} 9 UDP/TLS/RTP/SAVPF {fmt}", "c=IN IP4 0.0.0.0", f"a=mid:{i}",
            f"a={direction}", f"a=msid:stream track-{i:04d}", "a=rtcp-mux",
            f"a=rtpmap:{fmt} {codec}",
        ]  # fmt: skip
    return "\r\n".join(head + body) + "\r\n"


class Clients:
    """SDK clients joined to one hub, closed together."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.all: list[RoomClient] = []

    async def join(
        self, identity: str, room: str = "lobby", p2p: bool = False, **kw: Any
    ) -> RoomClient:
        c = RoomClient(
            self.hub.url, self.hub.token(room, identity, **kw), ice_hosts=LOOPBACK, p2p=p2p
        )
        self.all.append(c)
        await c.connect()
        return c

    async def close(self) -> None:
        for c in self.all:
            await c.close()


async def error_for(c: RoomClient, msg: dict[str, Any]) -> str:
    """Send `msg` with a fresh id; the code of the error the hub answers it with."""
    ref = f"r{len(c.inbox)}"
    wait = c.expect("error", ref=ref)
    await c.send({**msg, "id": ref})
    code: str = (await wait)["code"]
    return code


def count_mdns_lookups(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every mDNS resolver aioice creates from now on (to prove `.local` names are never
    looked up); the real resolver still runs."""
    lookups: list[object] = []
    real = aioice.ice.get_or_create_mdns_protocol

    async def counted(subscriber: object) -> Any:
        lookups.append(subscriber)
        return await real(subscriber)

    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", counted)
    return lookups


class PictureTrack(MediaStreamTrack):
    """One still picture (BGR ndarray) as a video track, `fps` frames a second."""

    kind = "video"

    def __init__(self, picture: np.ndarray, fps: int = 10) -> None:
        super().__init__()
        self.picture = picture
        self.fps = fps
        self.pts = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(1 / self.fps)
        frame = VideoFrame.from_ndarray(self.picture, format="bgr24")
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, self.fps)
        self.pts += 1
        return frame
