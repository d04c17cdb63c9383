"""Caption capacity: recognizer lifecycle off the loop, fair scheduling, the stream limit.

Real recognizers and deterministic audio; the assertions are about threads, order and
fairness, never wall-clock speed.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vosk

from commhub.captions import CaptionEvent, CaptionStream, RecognitionBudget
from commhub.protocol import schemas
from commhub.sdk import RoomClient
from commhub.speech import SpeechModel
from commhub.speech import vosk as vosk_engine
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


@pytest.fixture(scope="module")
def ko_speech() -> bytes:
    return espeak(KO_SENTENCE)


class Lifecycle:
    """Where real Kaldi recognizers are created and freed (thread names)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.freed: list[str] = []


@pytest.fixture
def lifecycle(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lifecycle]:
    seen = Lifecycle()
    real = vosk.KaldiRecognizer

    class Traced(real):  # type: ignore[misc,valid-type]
        """The real recognizer; its creation and its free (``__del__``) are noted."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            seen.created.append(threading.current_thread().name)
            weakref.finalize(self, lambda: seen.freed.append(threading.current_thread().name))

    monkeypatch.setattr(vosk_engine.vosk, "KaldiRecognizer", Traced)
    yield seen



async def lag_probe(lags: list[float], stop: asyncio.Event) -> None:
    """How late the loop wakes a 5 ms sleeper: a stall shows as a late wake-up."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - before - 0.005)


async def test_recognizer_is_created_before_speech_and_freed_on_a_worker(
    ko: SpeechModel, ko_speech: bytes, lifecycle: Lifecycle, record_property: Any
) -> None:
    assert isinstance(ko, vosk_engine.VoskModel)
    idle_max, ko.idle_max = ko.idle_max, 0  # no idle pool: closing must free it
    await asyncio.to_thread(ko.clear_idle)  # none left by earlier tests either
    budget = RecognitionBudget(2)
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(lags, stop))
    try:
        sink = Sink()
        stream = CaptionStream(ko, sink, speaker="alice", budget=budget)  # open vocabulary
        for chunk in chunks(silence(1.0), 20):
            await stream.push(chunk)
            await asyncio.sleep(0)
        for _ in range(500):  # the recognizer is there before anyone speaks
            if lifecycle.created:
                break
            await asyncio.sleep(0.01)
        assert len(lifecycle.created) == 1 and not sink.events
        for chunk in chunks((ko_speech + silence(0.8)) * 4, 20):
            await stream.push(chunk)
            await asyncio.sleep(0)
        await stream.close()
        assert len(sink.finals) >= 1  # open vocabulary: espeak Korean is not understood
        assert lifecycle.freed, "the recognizer was not freed"
    finally:
        ko.idle_max = idle_max
        stop.set()
        await probe
        budget.shutdown()
    main = threading.main_thread().name
    assert all(t != main and t.startswith("recognize") for t in lifecycle.created)
    assert all(t != main and t.startswith("recognize") for t in lifecycle.freed), lifecycle.freed
    record_property("loop_lag_max_ms", round(max(lags) * 1000, 1))
    record_property("loop_lag_samples", len(lags))


async def test_a_closed_recognizer_is_reused_warm_with_its_times_right(
    ko: SpeechModel, ko_speech: bytes, lifecycle: Lifecycle
) -> None:
    assert isinstance(ko, vosk_engine.VoskModel)
    await asyncio.to_thread(ko.clear_idle)  # none left by earlier tests
    budget = RecognitionBudget(1)
    finals: list[list[CaptionEvent]] = []
    try:
        for speaker in ("first", "second"):
            sink = Sink()
            stream = CaptionStream(ko, sink, speaker=speaker, phrases=KO_PHRASES, budget=budget)
            for chunk in chunks(silence(0.5) + ko_speech + silence(0.8), 20):
                await stream.push(chunk)
                await asyncio.sleep(0)
            await stream.close()
            finals.append(sink.finals)
    finally:
        budget.shutdown()
    # one Kaldi recognizer served both streams: created once, never freed meanwhile
    assert len(lifecycle.created) == 1 and lifecycle.freed == []
    first, second = (f[0] for f in finals)
    assert first.text.split() == second.text.split() == KO_WORDS
    # word times are the second stream's own, not the reused recognizer's running clock
    assert [round(w.start, 2) for w in second.words] == pytest.approx(
        [round(w.start, 2) for w in first.words], abs=0.1
    )


async def test_budget_serves_the_oldest_audio_first() -> None:
    budget = RecognitionBudget(max_active=1)
    gate = threading.Event()
    order: list[str] = []
    try:
        busy = asyncio.ensure_future(budget.run(gate.wait))
        await asyncio.sleep(0.05)  # the only thread is taken
        now = time.monotonic()
        jobs = [
            asyncio.ensure_future(budget.run(lambda n=name: order.append(n), deadline=now + d))
            for name, d in (("late", 3.0), ("oldest", 0.0), ("middle", 1.0))
        ]
        cancelled = asyncio.ensure_future(budget.run(lambda: order.append("never"), now - 9))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        assert budget.waiting == 3  # the cancelled job gave up its place
        gate.set()
        await asyncio.gather(busy, *jobs)
        assert order == ["oldest", "middle", "late"]
        assert budget.in_flight == 0 and budget.waiting == 0  # no slot leaked
    finally:
        gate.set()
        budget.shutdown()


@pytest.mark.e2e
async def test_past_capacity_every_speaker_falls_behind_equally(
    ko: SpeechModel, ko_speech: bytes
) -> None:
    """Four speakers, one recognize thread, held while their audio arrives interleaved
    (as live audio does): then finals come round-robin, no speaker two ahead of another,
    instead of one speaker's finals overtaking everyone's waiting audio."""
    budget = RecognitionBudget(1)
    order: list[str] = []

    def sink(name: str) -> Any:
        async def on_event(event: CaptionEvent) -> None:
            if event.final:
                order.append(name)

        return on_event

    names = [f"s{i}" for i in range(4)]
    streams = [
        CaptionStream(ko, sink(n), speaker=n, phrases=KO_PHRASES, budget=budget) for n in names
    ]
    await asyncio.sleep(0.5)  # let the streams take their recognizers
    hold = threading.Event()
    blocker = asyncio.ensure_future(budget.run(hold.wait))
    try:
        for chunk in chunks(silence(0.3) + (ko_speech + silence(0.8)) * 3, 20):
            for stream in streams:
                await stream.push(chunk)
            await asyncio.sleep(0)
        assert order == []  # nothing decoded yet: everything waits for the thread
        hold.set()
        await blocker
        await asyncio.gather(*(s.close() for s in streams))
    finally:
        hold.set()
        await blocker
        budget.shutdown()
    assert sorted(order) == sorted(names * 3), order
    for n in range(1, len(order) + 1):
        counts = [order[:n].count(name) for name in names]
        assert max(counts) - min(counts) <= 1, f"unfair after {n} finals: {order}"
    for s in streams:
        assert s.stats.dropped_utterances == 0


@pytest.mark.e2e
async def test_a_speaker_over_the_stream_limit_is_told_busy_then_captioned(
    start_hub: StartHub, loop_watch: LoopWatch, tmp_path: Path
) -> None:
    from commhub.server.keys import CAPTIONS

    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), caption_phrases={"ko": KO_PHRASES},
        caption_max_streams=1, translation=False,
    )  # fmt: skip
    captions = hub.server.app[CAPTIONS]
    assert captions.max_streams == 1
    short = write_wav(tmp_path / "short.wav", korean_speech(0.5, 1.5))
    long = write_wav(tmp_path / "long.wav", silence(1.0) + korean_speech(0.5, 1.5) * 6)
    clients: list[RoomClient] = []
    players: list[Any] = []

    async def join(identity: str) -> RoomClient:
        token = hub.token("desk", identity, speak="ko", read="ko")
        c = RoomClient(hub.url, token, ice_hosts=LOOPBACK)
        clients.append(c)
        await c.connect()
        return c

    def play(path: Path) -> Any:
        from aiortc.contrib.media import MediaPlayer

        player = MediaPlayer(str(path))
        players.append(player)
        return player.audio

    try:
        first = await join("first")
        second = await join("second")
        listener = await join("listener")
        await first.publish(play(short))
        for _ in range(3000):
            if captions.streams == 1:
                break
            await asyncio.sleep(0.01)
        assert captions.streams == 1
        busy = listener.expect("caption_unavailable", timeout=60, participant=second.pid)
        await second.publish(play(long))
        notice = await busy
        assert notice["reason"] == "busy" and notice["lang"] == "ko"
        assert captions.metrics.registry.get_sample_value("commhub_captions_refused_total") == 1
        assert captions.streams == 1  # the first speaker keeps the only stream
        # the first speaker leaves: the second speaker's next sentences are captioned (the
        # first caption may start mid-sentence, where the stream opened)
        await first.close()

        def whole_sentences() -> int:
            return sum(
                1
                for m in listener.inbox
                if m["type"] == "caption" and m["speaker"] == second.pid and m["final"]
                and m["text"].split() == KO_WORDS
            )  # fmt: skip

        for _ in range(900):
            if whole_sentences():
                break
            await asyncio.sleep(0.1)
        assert whole_sentences() >= 1
        for c in clients:
            for msg in c.inbox:
                schemas().check_server(msg)
    finally:
        for c in clients:
            await c.close()
        for player in players:
            if player.audio is not None:
                player.audio.stop()


@pytest.mark.e2e
async def test_the_fast_decoder_preset_is_its_own_model_and_still_right(
    models: Any, ko: SpeechModel, ko_speech: bytes
) -> None:
    from commhub.config import Settings, SettingsError

    fast = await models.load("ko", "fast")
    assert isinstance(fast, vosk_engine.VoskModel) and fast.preset == "fast"
    assert fast is not ko and await models.load("ko", "fast") is fast  # loaded once
    assert fast._overlay is not None
    conf = (Path(fast._overlay.name) / "conf" / "model.conf").read_text().splitlines()
    assert "--beam=8.0" in conf and "--max-active=1000" in conf
    budget = RecognitionBudget(1)
    try:
        sink = Sink()
        stream = CaptionStream(fast, sink, speaker="s", phrases=KO_PHRASES, budget=budget)
        for chunk in chunks(silence(0.5) + ko_speech + silence(0.8), 20):
            await stream.push(chunk)
        await stream.close()
    finally:
        budget.shutdown()
    assert [e.text.split() for e in sink.finals] == [KO_WORDS]
    with pytest.raises(SettingsError, match="caption_decoder"):
        Settings.load({"caption_decoder": "reckless"})
