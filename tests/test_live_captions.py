"""Live captions through a real WebRTC call: aiortc peers, the hub's audio tap, real models."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer

from commhub.sdk import RoomClient
from tests.audio import KO_PHRASES, KO_SENTENCE, KO_WORDS, espeak, silence
from tests.conftest import LoopWatch, Running, StartHub
from tests.media_helpers import LOOPBACK

pytestmark = pytest.mark.e2e


def write_wav(path: Path, pcm: bytes, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


@pytest.fixture(scope="module")
def korean_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pcm = silence(0.5) + espeak(KO_SENTENCE) + silence(1.5)
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
    await asyncio.sleep(0.5)
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
    import aiohttp

    speaker = await room.join("agent", speak="ko", read="ko")
    listener = await room.join("listener", speak="ko", read="ko")
    final = listener.expect("caption", timeout=60, final=True)
    await speaker.publish(room.play(korean_wav))
    await final
    async with aiohttp.ClientSession() as http, http.get(f"{caption_hub.url}/metrics") as resp:
        text = await resp.text()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("commhub_captions")
    }
    assert values["commhub_captions_finals_total"] >= 1
    assert values["commhub_captions_partials_total"] >= 1
    assert values["commhub_captions_audio_seconds_total"] > 2.0
    assert any(k.startswith("commhub_captions_stage_seconds_count") for k in values)
