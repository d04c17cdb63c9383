"""Live captions through a real WebRTC call: aiortc peers, the hub's audio tap, real models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer

from commhub.protocol import schemas
from commhub.sdk import RoomClient
from tests.conftest import LoopWatch, Running, StartHub
from tests.helpers.audio import KO_PHRASES, KO_WORDS, korean_speech, write_wav
from tests.helpers.media import LOOPBACK
from tests.helpers.metrics import samples
from tests.helpers.wait import barrier

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def korean_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pcm = korean_speech(0.5, 1.5)
    return write_wav(tmp_path_factory.mktemp("captions") / "ko.wav", pcm)


@pytest.fixture
async def caption_hub(start_hub: StartHub, loop_watch: LoopWatch) -> Running:
    return await start_hub(ice_host_addresses=list(LOOPBACK), caption_phrases={"ko": KO_PHRASES})


class Room:
    def __init__(self, hub: Running) -> None:
        self.hub = hub
        self.clients: list[RoomClient] = []
        self.players: list[MediaPlayer] = []

    def play(self, path: Path) -> MediaStreamTrack:
        """A real-time audio track of the file (its reader thread is stopped at teardown)."""
        player = MediaPlayer(str(path))
        self.players.append(player)
        assert player.audio is not None
        return player.audio

    async def join(self, identity: str, **kw: object) -> RoomClient:
        c = RoomClient(self.hub.url, self.hub.token("desk", identity, **kw), ice_hosts=LOOPBACK)
        self.clients.append(c)
        await c.connect()
        return c


@pytest.fixture
async def room(caption_hub: Running) -> AsyncIterator[Room]:
    r = Room(caption_hub)
    yield r
    for c in r.clients:
        await c.close()
    for player in r.players:
        if player.audio is not None:
            player.audio.stop()


async def test_korean_speaker_captioned_for_listener(room: Room, korean_wav: Path) -> None:
    agent = await room.join("agent", speak="ko", read="ko")
    listener = await room.join("resident", speak="ko", read="ko")
    final = listener.expect("caption", timeout=60, final=True)
    await agent.publish(room.play(korean_wav))
    got = await final
    assert got["speaker"] == agent.pid and got["lang"] == "ko"
    assert got["text"].split() == KO_WORDS
    assert [w["word"] for w in got["words"]] == KO_WORDS
    assert 0 < got["start"] < got["end"]
    partials = [m for m in listener.received("caption") if not m["final"]]
    assert partials, "no partial captions arrived before the final"
    assert {m["segment"] for m in partials} == {got["segment"]}
    assert all(m["speaker"] == agent.pid for m in partials)
    assert "translation" not in got  # the listener reads the spoken language


async def test_speaker_without_model_gets_a_notice(room: Room, korean_wav: Path) -> None:
    speaker = await room.join("visitor", speak="fr", read="fr")
    listener = await room.join("agent", speak="ko", read="ko")
    notice = listener.expect("caption_unavailable", timeout=30)
    await speaker.publish(room.play(korean_wav))
    got = await notice
    assert (got["participant"], got["lang"], got["reason"]) == (speaker.pid, "fr", "no_model")
    assert "commhub models install" in got["message"]
    # The call goes on: chat still flows.
    chat = listener.expect("chat", timeout=10)
    await speaker.send({"type": "chat", "text": "bonjour"})
    assert (await chat)["text"] == "bonjour"
    await barrier(speaker, listener)
    assert not listener.received("caption")


async def test_two_speakers_at_once_get_their_own_segments(room: Room, korean_wav: Path) -> None:
    a = await room.join("agent-a", speak="ko", read="ko")
    b = await room.join("agent-b", speak="ko", read="ko")
    listener = await room.join("listener", speak="ko", read="ko")
    finals = {
        who.pid: listener.expect("caption", timeout=60, final=True, speaker=who.pid)
        for who in (a, b)
    }
    for who in (a, b):
        await who.publish(room.play(korean_wav))
    got = {pid: await fut for pid, fut in finals.items()}
    assert {m["speaker"] for m in got.values()} == {a.pid, b.pid}
    assert got[a.pid]["segment"] != got[b.pid]["segment"]
    for m in got.values():
        assert m["text"].split() == KO_WORDS
    for m in listener.received("caption"):
        assert m["segment"] == got[m["speaker"]]["segment"]


async def test_speaker_leaving_mid_utterance_gets_a_final(
    room: Room, korean_wav: Path, caption_hub: Running
) -> None:
    from commhub.server.keys import CAPTIONS

    speaker = await room.join("leaver", speak="ko", read="ko")
    listener = await room.join("listener", speak="ko", read="ko")
    first_partial = listener.expect("caption", timeout=60, final=False)
    await speaker.publish(room.play(korean_wav))
    partial = await first_partial
    final = listener.expect("caption", timeout=30, final=True)
    await speaker.close()  # gone mid-sentence: no leave message, the socket just closes
    room.clients.remove(speaker)
    got = await final
    assert got["segment"] == partial["segment"] and got["speaker"] == partial["speaker"]
    captions = caption_hub.server.app[CAPTIONS]
    async with asyncio.timeout(10):
        while captions.active:  # the stream was closed, not leaked
            await asyncio.sleep(0.05)


async def test_caption_metrics_are_exported(
    room: Room, korean_wav: Path, caption_hub: Running
) -> None:
    speaker = await room.join("agent", speak="ko", read="ko")
    listener = await room.join("listener", speak="ko", read="ko")
    final = listener.expect("caption", timeout=60, final=True)
    await speaker.publish(room.play(korean_wav))
    await final
    values = await samples(caption_hub.url, "commhub_captions")
    assert values["commhub_captions_finals_total{}"] >= 1
    assert values["commhub_captions_partials_total{}"] >= 1
    assert values["commhub_captions_audio_seconds_total{}"] > 2.0
    assert any(k.startswith("commhub_captions_stage_seconds_count") for k in values)


async def test_captions_reach_only_participants_allowed_to_subscribe(
    room: Room, korean_wav: Path
) -> None:
    speaker = await room.join("agent", speak="ko", read="ko")
    listener = await room.join("resident", speak="ko", read="ko")
    reader = await room.join("visitor", speak="en", read="en")  # gets translations
    # tokens without `subscribe`, in the spoken language and in another
    lurker = await room.join("lurker", speak="ko", read="ko", grants=["chat"])
    foreign = await room.join("foreign", speak="en", read="en", grants=["chat", "publish"])
    finals = [c.expect("caption", timeout=60, final=True) for c in (listener, reader)]
    await speaker.publish(room.play(korean_wav))
    heard, translated = [await f for f in finals]
    assert heard["text"].split() == KO_WORDS
    assert translated["segment"] == heard["segment"] and "translation" in translated
    await barrier(lurker, foreign)  # everything sent so far has arrived: nothing for them
    for c in (lurker, foreign):
        assert not c.received("caption")
    chat = lurker.expect("chat", timeout=10)  # they are in the room all the same
    await foreign.send({"type": "chat", "text": "hello"})
    assert (await chat)["text"] == "hello"
    for c in room.clients:
        for msg in c.inbox:
            schemas().check_server(msg)


async def test_a_stalled_recognizer_sheds_speech_and_tells_the_room(
    start_hub: StartHub, loop_watch: LoopWatch, korean_wav: Path
) -> None:
    from commhub.server.keys import CAPTIONS

    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), caption_phrases={"ko": KO_PHRASES},
        caption_budget=1, caption_max_backlog=1.0, translation=False,
    )  # fmt: skip
    captions = hub.server.app[CAPTIONS]
    r = Room(hub)
    stuck = threading.Event()
    blocker = asyncio.ensure_future(captions.budget.run(stuck.wait))  # the only thread
    try:
        speaker = await r.join("agent", speak="ko", read="ko")
        listener = await r.join("resident", speak="ko", read="ko")
        degraded = listener.expect("caption_degraded", timeout=30)
        await speaker.publish(r.play(korean_wav))
        peak = 0.0
        while not degraded.done():
            peak = max([peak, *(s.backlog_seconds for s in captions.active.values())])
            await asyncio.sleep(0.02)
        notice = degraded.result()
        assert notice["participant"] == speaker.pid and notice["dropped_utterances"] >= 1
        assert peak <= 1.0 + captions.settings.chunk_ms / 1000
        stuck.set()
        await blocker
        # the recognizer is back: the next utterance is captioned whole
        final = listener.expect("caption", timeout=60, final=True)
        await speaker.publish(r.play(korean_wav))
        assert (await final)["text"].split() == KO_WORDS
        for c in r.clients:
            for msg in c.inbox:
                schemas().check_server(msg)
    finally:
        stuck.set()
        await blocker
        for c in r.clients:
            await c.close()
        for player in r.players:
            if player.audio is not None:
                player.audio.stop()
