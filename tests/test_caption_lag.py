"""The caption lag bound: past capacity speech is shed so finals stay within the bound.

Real Vosk recognizers and real audio. The recognize thread is held (what a node past its
capacity looks like to a stream: its audio waits) for longer than the bound; the
assertions are about what the mechanism did (shed, partials stopped, the preset switched,
the room told once), never about wall-clock speed.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from commhub.captions import (
    CaptionMetrics,
    CaptionStream,
    RecognitionBudget,
    StreamSettings,
)
from commhub.protocol import schemas
from commhub.speech import SpeechModel
from tests.conftest import LoopWatch, StartHub
from tests.helpers.audio import (
    KO_PHRASES,
    KO_SENTENCE,
    KO_WORDS,
    chunks,
    espeak,
    korean_speech,
    silence,
    write_wav,
)
from tests.helpers.captions import Sink
from tests.helpers.media import LOOPBACK
from tests.helpers.metrics import metric
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

BOUND = 2.0


@pytest.fixture(scope="module")
def ko_speech() -> bytes:
    return espeak(KO_SENTENCE)  # ~3.3 s



async def push(stream: CaptionStream, pcm: bytes, paced: bool = False) -> None:
    """20 ms frames, at once or in real time (as live audio comes)."""
    for chunk in chunks(pcm, 20):
        await stream.push(chunk)
        await asyncio.sleep(0.02 if paced else 0)


async def ready(streams: list[CaptionStream]) -> None:
    """Each stream has taken its recognizer (before the thread is held)."""
    await wait_for(lambda: all(s._recognizer is not None for s in streams), 60, "the recognizers")


async def test_past_the_bound_the_oldest_speech_is_shed_and_every_speaker_goes_on(
    models: Any, ko: SpeechModel, ko_speech: bytes
) -> None:
    fast = await models.load("ko", "fast")
    budget = RecognitionBudget(1)
    metrics = CaptionMetrics(CollectorRegistry())
    settings = StreamSettings(max_lag_s=BOUND)
    sinks = [Sink() for _ in range(3)]
    streams = [
        CaptionStream(
            ko, sink, speaker=f"s{i}", phrases=KO_PHRASES, settings=settings, budget=budget,
            metrics=metrics, fast=lambda: fast,
        )
        for i, sink in enumerate(sinks)
    ]  # fmt: skip
    hold = threading.Event()
    blocker: asyncio.Future[Any] | None = None
    try:
        await ready(streams)
        assert not budget.strained
        blocker = asyncio.ensure_future(budget.run(hold.wait))  # the only thread
        # two whole utterances each, then they wait past the bound for the thread
        for s in streams:
            await push(s, silence(0.3) + (ko_speech + silence(0.8)) * 2)
        await asyncio.sleep(BOUND + 0.5)
        assert all(not sink.events for sink in sinks)
        hold.set()
        await blocker
        # their finals could only come later than the bound: shed, not decoded
        await wait_for(
            lambda: all(s.stats.dropped_utterances == 2 for s in streams), 60, "shedding"
        )
        assert budget.strained  # and the node is marked over capacity
        # every speaker goes on: the next utterance, in real time, is captioned whole
        await asyncio.gather(*(push(s, ko_speech + silence(0.8), paced=True) for s in streams))
        await asyncio.gather(*(s.close() for s in streams))
    finally:
        hold.set()
        if blocker is not None:
            await blocker
        budget.shutdown()
    for s, sink in zip(streams, sinks, strict=True):
        assert [e.text.split() for e in sink.finals] == [KO_WORDS], s.speaker
        assert s.stats.lag_shed_seconds == s.stats.shed_seconds
        assert 2 * 3.0 < s.stats.shed_seconds < 2 * 4.5  # both utterances, nothing else
        assert s.stats.episodes == 1  # one episode: the room is told once
        assert s.stats.fast_utterances >= 1  # strained: the new utterance took the fast preset
    registry = metrics.registry
    assert registry.get_sample_value("commhub_captions_shed_seconds_total")  # > 0
    assert registry.get_sample_value("commhub_captions_degraded_episodes_total") == 3
    assert registry.get_sample_value("commhub_captions_dropped_utterances_total") == 6


async def test_a_lagging_stream_stops_its_partials_until_it_catches_up(
    ko: SpeechModel, ko_speech: bytes
) -> None:
    budget = RecognitionBudget(1)
    sink = Sink()
    settings = StreamSettings(max_lag_s=BOUND)
    stream = CaptionStream(
        ko, sink, speaker="s", phrases=KO_PHRASES, settings=settings, budget=budget
    )
    half = len(ko_speech) // 2 // 2 * 2
    hold = threading.Event()
    blocker: asyncio.Future[Any] | None = None
    try:
        await ready([stream])
        blocker = asyncio.ensure_future(budget.run(hold.wait))
        # half a sentence is spoken while the thread is held: it waits past half the bound
        await push(stream, silence(0.3) + ko_speech[:half])
        await asyncio.sleep(BOUND * 0.6)  # older than QUIET_AT (half) of the bound
        hold.set()
        await blocker
        await wait_for(lambda: stream.stats.skipped_partials > 0, 60, "a skipped partial")
        assert sink.partials == []  # its partial was not sent: the stream lagged
        # the rest in real time: the stream catches up and its partials come back
        await push(stream, ko_speech[half:] + silence(0.8), paced=True)
        await stream.close()
    finally:
        hold.set()
        if blocker is not None:
            await blocker
        budget.shutdown()
    assert sink.partials, "partials did not resume once the stream caught up"
    assert stream.stats.shed_seconds == 0  # within the bound: nothing had to go
    assert [e.text.split() for e in sink.finals] == [KO_WORDS]
    assert stream.stats.episodes == 1


async def test_a_speaker_still_speaking_is_captioned_from_the_newest_speech(
    ko: SpeechModel, ko_speech: bytes
) -> None:
    budget = RecognitionBudget(1)
    sink = Sink()
    settings = StreamSettings(max_lag_s=BOUND)
    stream = CaptionStream(
        ko, sink, speaker="s", phrases=KO_PHRASES, settings=settings, budget=budget
    )
    cut = int(len(ko_speech) * 0.85) // 2 * 2
    hold = threading.Event()
    blocker: asyncio.Future[Any] | None = None
    try:
        await ready([stream])
        blocker = asyncio.ensure_future(budget.run(hold.wait))
        # most of a sentence waits past the bound, and the speaker is still speaking
        await push(stream, silence(0.3) + ko_speech[:cut])
        await asyncio.sleep(BOUND)
        hold.set()
        await blocker
        await wait_for(lambda: stream.stats.lag_shed_seconds > 0, 60, "the oldest speech shed")
        await push(stream, ko_speech[cut:] + silence(0.8), paced=True)
        await stream.close()
    finally:
        hold.set()
        if blocker is not None:
            await blocker
        budget.shutdown()
    assert stream.stats.dropped_utterances == 1
    # the newest speech was kept and captioned: one final, for the sentence's later part
    (final,) = sink.finals
    assert final.start > 1.0 and final.text
    assert set(final.text.split()) <= {*KO_PHRASES}
    assert 0 < stream.stats.shed_seconds < 0.3 + len(ko_speech) / 32000


async def test_below_capacity_nothing_is_shed(ko: SpeechModel, ko_speech: bytes) -> None:
    budget = RecognitionBudget(2)
    settings = StreamSettings(max_lag_s=BOUND)
    sinks = [Sink() for _ in range(2)]
    streams = [
        CaptionStream(
            ko, sink, speaker=f"s{i}", phrases=KO_PHRASES, settings=settings, budget=budget
        )
        for i, sink in enumerate(sinks)
    ]
    try:
        pcm = silence(0.3) + (ko_speech + silence(0.8)) * 2
        await asyncio.gather(*(push(s, pcm, paced=True) for s in streams))
        await asyncio.gather(*(s.close() for s in streams))
    finally:
        budget.shutdown()
    for s, sink in zip(streams, sinks, strict=True):
        assert s.stats.shed_seconds == 0 and s.stats.dropped_utterances == 0
        assert [e.text.split() for e in sink.finals] == [KO_WORDS] * 2


async def test_the_room_is_told_once_per_episode_and_every_speaker_is_captioned_after(
    start_hub: StartHub, loop_watch: LoopWatch, tmp_path: Path
) -> None:
    from aiortc.contrib.media import MediaPlayer

    from commhub.sdk import RoomClient
    from commhub.server.keys import CAPTIONS

    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), caption_phrases={"ko": KO_PHRASES},
        caption_budget=1, caption_max_lag=BOUND, caption_fast_auto=False, translation=False,
    )  # fmt: skip
    captions = hub.server.app[CAPTIONS]
    # a sentence, then the speaker keeps the microphone open (silence) a while
    wav = write_wav(tmp_path / "ko.wav", korean_speech(0.5, 1.5) + silence(8.0))
    clients: list[RoomClient] = []
    players: list[Any] = []

    async def join(identity: str) -> RoomClient:
        token = hub.token("desk", identity, speak="ko", read="ko")
        c = RoomClient(hub.url, token, ice_hosts=LOOPBACK)
        clients.append(c)
        await c.connect()
        return c

    def play() -> Any:
        player = MediaPlayer(str(wav))
        players.append(player)
        return player.audio

    hold = threading.Event()
    blocker: asyncio.Future[Any] | None = None
    try:
        speakers = [await join(f"speaker-{i}") for i in range(3)]
        listener = await join("listener")
        blocker = asyncio.ensure_future(captions.budget.run(hold.wait))  # the only thread
        for s in speakers:
            await s.publish(play())
        # every speaker's sentence is heard whole (the file ends), then waits past the bound
        await wait_for(
            lambda: (
                len(captions.active) == 3
                and all(st.stats.audio_seconds >= 4.5 for st in captions.active.values())
            ),
            120,
            "the speakers' audio",
        )
        await asyncio.sleep(BOUND)
        hold.set()
        await blocker

        def notices(pid: str) -> list[dict[str, Any]]:
            return [
                m for m in listener.inbox
                if m["type"] == "caption_degraded" and m["participant"] == pid
            ]  # fmt: skip

        await wait_for(lambda: all(notices(s.pid) for s in speakers), 60, "caption_degraded")
        # the tracks end (a stream's last notice would come then): a fresh stream each next
        await wait_for(lambda: captions.streams == 0, 120, "the first tracks to end")
        for s in speakers:
            (notice,) = notices(s.pid)  # once per episode
            assert notice["dropped_utterances"] >= 1 and notice["shed_seconds"] > 0
            assert not any(  # the shed sentence got no final
                m["type"] == "caption" and m["final"] and m["speaker"] == s.pid
                for m in listener.inbox
            )
        assert await metric(hub.url, "commhub_captions_shed_seconds_total") > 0
        # every speaker goes on: the next sentence is captioned
        finals = [
            listener.expect("caption", timeout=120, final=True, speaker=s.pid) for s in speakers
        ]
        for s in speakers:
            await s.publish(play())
        for got in await asyncio.gather(*finals):
            assert got["text"].split() == KO_WORDS
        for c in clients:
            for msg in c.inbox:
                schemas().check_server(msg)
    finally:
        hold.set()
        if blocker is not None:
            await blocker
        for c in clients:
            await c.close()
        for player in players:
            if player.audio is not None:
                player.audio.stop()
