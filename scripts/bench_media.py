#!/usr/bin/env python3
"""Media benchmark: what relaying costs the hub, beside a direct aiortc-to-aiortc call.

A real hub runs in its own process (its CPU is measured with psutil); publishers and
subscribers are RoomClient SDK peers in this process. Subscribers count complete encoded
frames without decoding them (so the clients stay cheap on a shared 2-core machine).

Scenarios, each over a fixed window:
  direct        one aiortc peer sends audio+video straight to another (no hub): the baseline
  audio/video   one publisher, N receive-only subscribers, through the hub, with the hub's
                encoded-frame forwarding ("forward") and with aiortc's MediaRelay, which
                re-encodes per subscriber ("reencode"), for the per-subscriber CPU slope
  room          N participants all publishing audio+video, each receiving the N-1 others:
                where frames start to drop or arrive late

    .venv/bin/python scripts/bench_media.py            # ~2.5 min
    .venv/bin/python scripts/bench_media.py --quick    # ~1 min
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from benchlib import pct, write_json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from av.audio.frame import AudioFrame  # noqa: E402
from av.video.frame import VideoFrame  # noqa: E402

from commhub import auth  # noqa: E402
from commhub.media.forward import tee_receiver  # noqa: E402
from commhub.rtc.ice import IcePolicy, policy_scope  # noqa: E402
from commhub.sdk import RoomClient  # noqa: E402

SECRET = "bench-" + "m" * 48
LOOP = ("127.0.0.1",)


# -- the hub process ---------------------------------------------------------------------


def serve(port: int, relay: str) -> None:
    from aiohttp import web

    from commhub.app import create_app
    from commhub.config import Settings

    if relay == "reencode":
        _use_media_relay()
    settings = Settings.load(
        {
            "secret": SECRET,
            "port": port,
            "ice_host_addresses": list(LOOP),
            "captions": False,
            "translation": False,
            "room_capacity": 100,
            "media_stall_timeout": 30.0,
            "data_dir": Path(tempfile.gettempdir()) / "commhub-bench-media",
        },
        env={},
    )
    app = create_app(settings, SECRET)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: print("ready", flush=True))


def _use_media_relay() -> None:
    """The textbook aiortc SFU: decode each published track, MediaRelay it to every
    subscriber's sender, which encodes again (one encoder per subscriber)."""
    from aiortc.contrib.media import MediaRelay
    from aiortc.rtcrtpsender import RTCRtpSender

    from commhub.media import forward, manager
    from commhub.media.session import SUPPORTED, PeerSession, Slot

    relay = MediaRelay()
    manager.tee_receiver = lambda rx, on_frame, decode, *rest: forward.tee_receiver(
        rx, on_frame, True, *rest
    )
    manager.AudioTaps.active = property(lambda self: False)  # type: ignore[assignment,method-assign]

    def apply_slots(self: PeerSession) -> None:
        for pub in self._wanted:
            transceiver = self.pc.addTransceiver(
                relay.subscribe(pub.receiver.track), direction="sendonly"
            )
            transceiver.setCodecPreferences(
                [
                    c
                    for c in RTCRtpSender.getCapabilities(pub.kind).codecs
                    if c.mimeType.split("/")[1].lower() in SUPPORTED[pub.kind]
                ]
            )
            slot = Slot(transceiver, forward.ForwardTrack(pub.kind))  # bookkeeping only
            slot.publication = pub
            self.slots.append(slot)
        self._wanted.clear()

    PeerSession._apply_slots = apply_slots  # type: ignore[method-assign]


# -- media sources and sinks -------------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    """20 ms of a 440 Hz tone with a moving envelope, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.t0: float | None = None
        self.n = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.t0 is None:
            self.t0 = time.monotonic()
        wait = self.t0 + self.n * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(960) + self.n * 960) / 48000
        env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)
        samples = (8000 * env * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.n += 1
        return frame


class MovingTrack(MediaStreamTrack):
    """320x240 at 30 fps with a moving bar (a still image would make VP8 free)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.t0: float | None = None
        self.n = 0
        rng = np.random.default_rng(1)
        self.noise = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.t0 is None:
            self.t0 = time.monotonic()
        wait = self.t0 + self.n / 30 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        img = self.noise // 4
        x = (self.n * 8) % 320
        img[:, x : x + 24] = 255
        frame = VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = self.n * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self.n += 1
        return frame


class Counter:
    """Arrival times of complete encoded frames on one receiver (no decoding)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.arrivals: list[float] = []

    def __call__(self, mime: str, data: bytes, ts: int) -> bool:
        self.arrivals.append(time.monotonic())
        return True

    def window(self, start: float, end: float) -> tuple[float, float]:
        """frames/s and the p95 gap between frames (ms) within [start, end]."""
        inside = [t for t in self.arrivals if start <= t <= end]
        rate = len(inside) / (end - start)
        gaps = np.diff(inside) * 1000 if len(inside) > 2 else np.array([end - start]) * 1000
        return rate, pct(list(gaps), 95)


def count_without_decoding(pc: RTCPeerConnection, counters: list[Counter]) -> None:
    @pc.on("track")
    def _track(track: MediaStreamTrack) -> None:
        rx = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        c = Counter(track.kind)
        counters.append(c)
        tee_receiver(rx, c, decode=False)


# -- scenarios ---------------------------------------------------------------------------


class Hub:
    def __init__(self, relay: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), "--relay", relay],
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("BENCH_HUB_LOG") else subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.ps = psutil.Process(self.proc.pid)
        self.rooms = 0

    def room(self) -> str:
        self.rooms += 1
        return f"bench-{self.rooms}"

    def token(self, room: str, identity: str) -> str:
        return auth.issue(SECRET, room=room, identity=identity)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def measure(window: float, ps: psutil.Process | None) -> tuple[float, float, float]:
    """CPU % of ps (or of this process) over the window; returns (start, end, cpu%)."""
    proc = ps or psutil.Process()
    t0 = proc.cpu_times()
    start = time.monotonic()
    await asyncio.sleep(window)
    end = time.monotonic()
    t1 = proc.cpu_times()
    cpu = (t1.user + t1.system - t0.user - t0.system) / (end - start) * 100
    return start, end, cpu


def summarise(counters: list[Counter], start: float, end: float, kind: str) -> tuple[float, float]:
    stats = [c.window(start, end) for c in counters if c.kind == kind]
    if not stats:
        return 0.0, 0.0
    return min(r for r, _ in stats), max(g for _, g in stats)


async def direct(window: float) -> dict[str, Any]:
    a, b = RTCPeerConnection(), RTCPeerConnection()
    counters: list[Counter] = []
    count_without_decoding(b, counters)
    a.addTrack(ToneTrack())
    a.addTrack(MovingTrack())
    with policy_scope(IcePolicy(hosts=LOOP)):
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(RTCSessionDescription(b.localDescription.sdp, "answer"))
    await asyncio.sleep(2.0)
    start, end, cpu = await measure(window, None)
    fps, gap = summarise(counters, start, end, "video")
    aps, agap = summarise(counters, start, end, "audio")
    await a.close()
    await b.close()
    return {
        "scenario": "direct",
        "relay": "-",
        "n": 1,
        "hub_cpu": None,
        "client_cpu": cpu,
        "audio_fps": aps,
        "audio_gap_p95_ms": agap,
        "video_fps": fps,
        "video_gap_p95_ms": gap,
    }


async def fanout(hub: Hub, relay: str, kind: str, n: int, window: float) -> dict[str, Any]:
    room = hub.room()
    subs: list[RoomClient] = []
    counters: list[Counter] = []
    for i in range(n):
        c = RoomClient(hub.url, hub.token(room, f"sub{i}"), ice_hosts=LOOP)
        await c.connect()
        c.pc = RTCPeerConnection()
        c._pcs.add(c.pc)
        count_without_decoding(c.pc, counters)
        c.pc.on("track", lambda track, c=c: c._on_hub_track(track))
        await c.negotiate()
        subs.append(c)
    pub = RoomClient(hub.url, hub.token(room, "pub"), ice_hosts=LOOP)
    await pub.connect()
    await pub.publish(ToneTrack() if kind == "audio" else MovingTrack())
    await asyncio.sleep(2.5)
    start, end, cpu = await measure(window, hub.ps)
    rate, gap = summarise(counters, start, end, kind)
    for c in [pub, *subs]:
        await c.close()
    return {"scenario": kind, "relay": relay, "n": n, "hub_cpu": cpu, "client_cpu": None,
            f"{kind}_fps": rate, f"{kind}_gap_p95_ms": gap}  # fmt: skip


async def meeting(hub: Hub, n: int, window: float) -> dict[str, Any]:
    room = hub.room()
    people: list[RoomClient] = []
    counters: list[Counter] = []
    for i in range(n):
        c = RoomClient(hub.url, hub.token(room, f"p{i}"), ice_hosts=LOOP)
        await c.connect()
        c.pc = RTCPeerConnection()
        c._pcs.add(c.pc)
        count_without_decoding(c.pc, counters)
        c.pc.on("track", lambda track, c=c: c._on_hub_track(track))
        # one offer with both tracks, connected before the next arrives: the SDK is an
        # aiortc peer, which cannot roll back an offer that crosses the hub's (glare)
        await c.publish(ToneTrack(), MovingTrack())
        async with asyncio.timeout(20):
            while c._awaiting_answer or c.pc.connectionState != "connected":
                await asyncio.sleep(0.05)
        people.append(c)
    await asyncio.sleep(3.0)
    me = psutil.Process()
    c0 = me.cpu_times()
    start, end, cpu = await measure(window, hub.ps)
    c1 = me.cpu_times()
    clients_cpu = (c1.user + c1.system - c0.user - c0.system) / (end - start) * 100
    aps, agap = summarise(counters, start, end, "audio")
    fps, gap = summarise(counters, start, end, "video")
    flows = sum(1 for c in counters if c.kind == "video")
    for c in people:
        await c.close()
    return {
        "scenario": "room",
        "relay": "forward",
        "n": n,
        "hub_cpu": cpu,
        "client_cpu": clients_cpu,  # all N clients: one Python process, one GIL
        "audio_fps": aps,
        "audio_gap_p95_ms": agap,
        "video_fps": fps,
        "video_gap_p95_ms": gap,
        "video_flows": flows,
    }


def slope(rows: list[dict[str, Any]], kind: str, relay: str) -> float | None:
    pts = [(r["n"], r["hub_cpu"]) for r in rows if r["scenario"] == kind and r["relay"] == relay]
    if len(pts) < 2:
        return None
    xs, ys = zip(*pts, strict=True)
    return float(np.polyfit(xs, ys, 1)[0])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    window = args.window
    ns = [1, 4] if args.quick else [1, 4, 8]
    room_ns = [2, 4] if args.quick else [2, 3, 4, 6]
    rows: list[dict[str, Any]] = [await direct(window)]
    print(f"direct call done: {rows[-1]['client_cpu']:.0f}% CPU (both peers)", flush=True)
    for relay in ("forward", "reencode"):
        hub = Hub(relay)
        try:
            for kind in ("audio", "video"):
                for n in ns:
                    rows.append(await fanout(hub, relay, kind, n, window))
                    print(f"{relay} {kind} x{n}: hub {rows[-1]['hub_cpu']:.0f}%", flush=True)
            if relay == "forward":
                for n in room_ns:
                    rows.append(await meeting(hub, n, window))
                    r = rows[-1]
                    print(
                        f"room of {n}: hub {r['hub_cpu']:.0f}%, video {r['video_fps']:.1f} fps",
                        flush=True,
                    )
        finally:
            hub.stop()
    per_sub = {
        f"{kind}_{relay}": slope(rows, kind, relay)
        for kind in ("audio", "video")
        for relay in ("forward", "reencode")
    }
    return {"machine": {"cpus": os.cpu_count(), "load": os.getloadavg()}, "window_s": window,
            "rows": rows, "hub_cpu_percent_per_subscriber": per_sub}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    head = f"{'scenario':9} {'relay':9} {'n':>3} {'hub CPU%':>9} {'client CPU%':>11} " \
        f"{'audio f/s':>9} {'a gap p95':>9} {'video f/s':>9} {'v gap p95':>9}"  # fmt: skip
    lines = [head, "-" * len(head)]

    def f(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    for r in result["rows"]:
        lines.append(
            f"{r['scenario']:9} {r['relay']:9} {r['n']:>3} {f(r.get('hub_cpu'), '9.1f'):>9} "
            f"{f(r.get('client_cpu'), '11.1f'):>11} {f(r.get('audio_fps'), '9.1f'):>9} "
            f"{f(r.get('audio_gap_p95_ms'), '9.0f'):>9} {f(r.get('video_fps'), '9.1f'):>9} "
            f"{f(r.get('video_gap_p95_ms'), '9.0f'):>9}"
        )
    lines.append("")
    lines.append("hub CPU % per added subscriber (least-squares slope):")
    for k, v in result["hub_cpu_percent_per_subscriber"].items():
        lines.append(f"  {k:16} {f(v, '.2f')}")
    lines.append("(f/s: the worst subscriber's frames per second; gap p95: its 95th-percentile")
    lines.append(" gap between frames in ms; audio is 50 f/s, video 30 f/s at the source;")
    lines.append(" client CPU% in room rows is every client together, in this one process)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--window", type=float, default=5.0, help="seconds measured per scenario")
    ap.add_argument("--quick", action="store_true", help="fewer points (about a minute)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench-results", help="file or directory")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--relay", default="forward", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.relay)
        return
    result = asyncio.run(run(args))
    print()
    print(table(result))
    out = args.json
    if out.suffix != ".json":
        out.mkdir(parents=True, exist_ok=True)
        out = out / f"bench_media-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(out, result)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
