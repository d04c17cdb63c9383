"""Each part built alone from its ports (no Hub), and the import graph that allows it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av.audio.frame import AudioFrame
from prometheus_client import CollectorRegistry

from commhub.captions.live import LiveCaptions
from commhub.config import Settings
from commhub.hub import Hub, NoMedia
from commhub.media import Media
from commhub.media.tap import AudioTaps
from commhub.protocol import Message, Outgoing, schemas
from commhub.rooms import Participant, Room, Rooms
from commhub.rtc.ice import IcePolicy, policy_scope
from commhub.speech import SpeechModels
from tests.helpers.audio import KO_PHRASES, KO_WORDS, korean_speech, webrtc_frames
from tests.helpers.media import LOOPBACK, ToneTrack, collect_audio

CHECK = Outgoing(schemas(), True)
ROOT = Path(__file__).resolve().parents[1]


class Socket:
    """A participant's connection as the registry holds it (nothing reaches it here)."""

    def deliver(self, data: str) -> None:
        raise AssertionError("the part under test wrote past its outbox")

    async def end(self, reason: str, message: str, ref: str | None = None) -> None:
        pass


class RecordingOutbox:
    """The outbox port: records every message (each checked against its schema)."""

    def __init__(self) -> None:
        self.sent: dict[int, asyncio.Queue[Message]] = {}
        self.published: list[tuple[str, Message, Any]] = []
        self.texts: list[tuple[str, Message, str | None, str, Collection[str] | None]] = []

    def inbox(self, p: Participant) -> asyncio.Queue[Message]:
        return self.sent.setdefault(id(p.conn), asyncio.Queue())

    def send(self, conn: Any, msg: Message) -> None:
        CHECK.check(msg)
        self.sent.setdefault(id(conn), asyncio.Queue()).put_nowait(msg)

    async def publish(
        self,
        room: str,
        msg: Message,
        *,
        to: str | Collection[str] | None = None,
        exclude: str | None = None,
    ) -> None:
        CHECK.check(msg)
        self.published.append((room, msg, to))

    async def publish_text(
        self,
        room: Room,
        msg: Message,
        text: str | None,
        source: str,
        *,
        lane: str,
        to: Collection[str] | None = None,
        droppable: bool = False,
    ) -> None:
        CHECK.check(msg)
        self.texts.append((room.name, msg, text, source, to))


def person(identity: str, grants: str = "publish subscribe", lang: str = "ko") -> Participant:
    return Participant(
        identity, identity, "resident", frozenset(grants.split()), lang, lang, Socket()
    )


async def next_of(queue: asyncio.Queue[Message], kind: str) -> Message:
    while True:
        msg = await asyncio.wait_for(queue.get(), 20)
        if msg["type"] == kind:
            return msg


# -- import graph ----------------------------------------------------------------------


def loaded_by(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, text=True, cwd=ROOT
    )
    return {m for m in json.loads(out.stdout) if m.startswith("commhub")}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("commhub.hub", {"commhub.media", "commhub.captions", "commhub.server", "commhub.app"}),
        ("commhub.media", {"commhub.hub", "commhub.captions", "commhub.server", "commhub.app"}),
        ("commhub.captions.live", {"commhub.hub", "commhub.media", "commhub.server"}),
        ("commhub.translate", {"commhub.hub", "commhub.media", "commhub.captions"}),
    ],
)
def test_import_graph(module: str, forbidden: set[str]) -> None:
    loaded = loaded_by(module)
    assert module in loaded
    bad = {m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert not bad, f"{module} imports {sorted(bad)}"


# -- the hub alone: no media layer given, rooms and chat still work -------------------------


class Inbox:
    """A participant's socket that keeps what it is sent (decoded)."""

    def __init__(self) -> None:
        self.got: list[Message] = []

    def deliver(self, data: str) -> None:
        self.got.append(json.loads(data))

    async def end(self, reason: str, message: str, ref: str | None = None) -> None:
        pass


async def test_hub_alone_without_media() -> None:
    hub = Hub(Settings(captions=False, translation=False, check_outgoing=True), "s" * 32)
    assert isinstance(hub.media, NoMedia)
    await hub.start()
    try:
        a, b = Inbox(), Inbox()
        pa = Participant("alice", "Alice", "resident", frozenset({"chat"}), "en", "en", a)
        pb = Participant("bob", "Bob", "resident", frozenset({"chat"}), "en", "en", b)
        room = await hub.join("lobby", pa, ref="j1")
        await hub.join("lobby", pb)
        assert a.got[0]["type"] == "joined" and a.got[0]["ref"] == "j1"
        assert a.got[0]["room"]["mode"] == "sfu"
        assert [m["type"] for m in a.got[1:]] == ["participant_joined"]
        await hub.chat(room, pb, "hello", ref="c1")
        assert a.got[-1]["type"] == "chat" and a.got[-1]["text"] == "hello"
        assert b.got[-1]["ref"] == "c1"
    finally:
        await hub.shutdown()


# -- media alone: a real Rooms, a recording outbox, two real aiortc peers --------------------


async def test_media_alone_relays_a_publisher_to_a_subscriber() -> None:
    settings = Settings(ice_host_addresses=list(LOOPBACK), captions=False, translation=False)
    rooms = Rooms(10, 10, 60.0)
    outbox = RecordingOutbox()
    media = Media(settings, rooms, outbox)
    await media.start()
    alice, bob = person("alice"), person("bob")
    policy = IcePolicy(hosts=LOOPBACK)
    pa, pb = RTCPeerConnection(), RTCPeerConnection()
    try:
        for p in (alice, bob):
            rooms.join("lobby", p)
            assert media.admit("lobby", p, {}) == "sfu"
            await media.joined("lobby", p)
            assert (await next_of(outbox.inbox(p), "media_mode"))["mode"] == "sfu"

        # bob opens a receive-only session first
        pb.addTransceiver("audio", direction="recvonly")
        with policy_scope(policy):
            await pb.setLocalDescription(await pb.createOffer())
        await media.handle(
            "lobby", bob, {"type": "offer", "id": "b1", "sdp": pb.localDescription.sdp}
        )
        answer = await next_of(outbox.inbox(bob), "answer")
        assert answer["ref"] == "b1"
        await pb.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        got: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        pb.on("track", got.put_nowait)

        # alice publishes a tone
        pa.addTrack(ToneTrack())
        with policy_scope(policy):
            await pa.setLocalDescription(await pa.createOffer())
        await media.handle(
            "lobby", alice, {"type": "offer", "id": "a1", "sdp": pa.localDescription.sdp}
        )
        answer = await next_of(outbox.inbox(alice), "answer")
        await pa.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

        # the hub offers bob alice's track through the outbox; bob answers through handle
        offer = await next_of(outbox.inbox(bob), "offer")
        assert [t["participant"] for t in offer["tracks"]] == [alice.id]
        await pb.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        with policy_scope(policy):
            await pb.setLocalDescription(await pb.createAnswer())
        await media.handle("lobby", bob, {"type": "answer", "sdp": pb.localDescription.sdp})

        async def tone() -> np.ndarray:
            while True:
                track = await asyncio.wait_for(got.get(), 20)
                audio = await collect_audio(track, 1.0)
                if np.abs(audio).max() > 1000:
                    return audio

        assert (await asyncio.wait_for(tone(), 30)).size > 0
        published = [m for _, m, _ in outbox.published if m["type"] == "track"]
        assert published and published[0]["state"] == "published"
        assert published[0]["participant"] == alice.id
        assert media.counts() == {"sessions": 2, "publications": 1}

        # a leave the hub reports ends alice's publication and tells the room
        rooms.leave("lobby", alice.id)
        await media.leave("lobby", alice, "left")
        assert media.counts() == {"sessions": 1, "publications": 0}
        states = [m["state"] for _, m, _ in outbox.published if m["type"] == "track"]
        assert states[-1] == "unpublished"
    finally:
        await pa.close()
        await pb.close()
        await media.close()


# -- captions alone: a real audio tap, the real Korean model, a recording outbox -----------


class SpeechTrack(MediaStreamTrack):
    """Decoded 48 kHz frames of the Korean sentence, as the media layer's tap delivers them."""

    kind = "audio"

    def __init__(self, frames: list[AudioFrame]) -> None:
        super().__init__()
        self.frames = list(frames)

    async def recv(self) -> AudioFrame:
        if not self.frames:
            self.stop()
            raise MediaStreamError
        await asyncio.sleep(0.002)  # faster than real time, but still yielding
        return self.frames.pop(0)


async def test_live_captions_alone_caption_a_tapped_speaker(models: SpeechModels) -> None:
    settings = Settings(
        caption_phrases={"ko": KO_PHRASES}, caption_preload=[], caption_warm_recognizers=0
    )
    rooms = Rooms(10, 10, 60.0)
    speaker, listener = person("agent"), person("resident", grants="subscribe")
    rooms.join("desk", speaker)
    rooms.join("desk", listener)
    taps, outbox = AudioTaps(), RecordingOutbox()
    captions = LiveCaptions(
        settings, models, rooms=rooms, audio=taps, outbox=outbox, registry=CollectorRegistry()
    )
    captions.start()
    try:
        taps.attach("pub-1", speaker, SpeechTrack(webrtc_frames(korean_speech(0.5, 1.5))), "mic")

        async def final() -> Message:
            while True:
                for _, msg, _, _, _ in outbox.texts:
                    if msg["final"]:
                        return msg
                await asyncio.sleep(0.05)

        msg = await asyncio.wait_for(final(), 60)
        assert msg["speaker"] == speaker.id and msg["lang"] == "ko"
        assert msg["text"].split() == KO_WORDS
        room_name, _, text, source, to = next(t for t in outbox.texts if t[1] is msg)
        assert (room_name, text, source) == ("desk", msg["text"], "ko")
        # what was said goes to those allowed to receive media: both hold subscribe
        assert set(to or ()) == {speaker.id, listener.id}
    finally:
        await captions.close()
        await taps.close()
