"""The captions pipeline core, frame by frame and end to end, with real models."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from commhub.captions import (
    CaptionMetrics,
    CaptionStream,
    GateSettings,
    RecognitionBudget,
    Resampler,
    StreamSettings,
    VoiceGate,
)
from commhub.captions.gate import SpeechAudio, SpeechEnd, SpeechStart
from commhub.speech import SpeechModel
from tests.helpers.audio import (
    KO_PHRASES,
    KO_SENTENCE,
    KO_WORDS,
    POCKETSPHINX_DATA,
    chunks,
    espeak,
    librivox,
    silence,
    wav_pcm,
    webrtc_frames,
    white_noise,
    word_errors,
)
from tests.helpers.captions import Sink

# Measured: 0.34 word error rate on the five LibriVox recordings through the pipeline
# (pocketsphinx alone on whole files: 0.28).
LIBRIVOX_WER_BOUND = 0.40


@pytest.fixture(scope="module")
def ko_speech() -> bytes:
    return espeak(KO_SENTENCE)


@pytest.fixture
def budget() -> RecognitionBudget:
    b = RecognitionBudget(2)
    yield b  # type: ignore[misc]
    b.shutdown()



async def feed(stream: CaptionStream, items: list[bytes] | list, pace: float = 0.0) -> None:
    for item in items:
        await stream.push(item)
        await asyncio.sleep(pace)


# -- processors, frame by frame ---------------------------------------------------------


def test_resampler_turns_webrtc_frames_into_16k_mono(ko_speech: bytes) -> None:
    resample = Resampler()
    out = b"".join(resample(f) for f in webrtc_frames(ko_speech)) + resample.flush()
    assert abs(len(out) - len(ko_speech)) <= 2 * 64
    a = np.frombuffer(ko_speech, "<i2").astype(float)
    b = np.frombuffer(out, "<i2").astype(float)
    n = min(len(a), len(b))
    lags = [np.corrcoef(a[: n - 32], b[lag : n - 32 + lag])[0, 1] for lag in range(32)]
    assert max(lags) > 0.9


def test_gate_keeps_pre_roll_and_ends_after_the_silence_setting(ko_speech: bytes) -> None:
    settings = GateSettings(pre_roll_ms=300, end_silence_ms=500)
    gate = VoiceGate(settings)
    events = gate.push(silence(1.0) + ko_speech + silence(1.0))
    kinds = [type(e) for e in events if not isinstance(e, SpeechAudio)]
    assert kinds == [SpeechStart, SpeechEnd]
    start = next(e for e in events if isinstance(e, SpeechStart))
    end = next(e for e in events if isinstance(e, SpeechEnd))
    audio = b"".join(e.pcm for e in events if isinstance(e, SpeechAudio))
    assert 0.6 <= start.t < 1.0 + 0.3  # opened with pre-roll before the speech onset
    assert end.t <= 1.0 + len(ko_speech) / 32000 + 0.05
    # everything from the start to 500 ms after the speech, nothing of the silence after
    assert abs(len(audio) / 32000 - (end.t + 0.5 - start.t)) < 0.1
    assert gate.push(silence(2.0)) == []


def test_gate_ignores_steady_noise_but_hears_speech_over_it(ko_speech: bytes) -> None:
    noise = np.frombuffer(white_noise(8.0, level=0.05), "<i2").astype(np.int32)
    assert VoiceGate().push(noise.astype("<i2").tobytes()) == []
    speech = np.frombuffer(silence(3.0) + ko_speech, "<i2").astype(np.int32)
    mixed = (noise[: len(speech)] + speech).clip(-32768, 32767).astype("<i2").tobytes()
    events = VoiceGate().push(mixed)
    assert any(isinstance(e, SpeechStart) for e in events)
    assert all(e.t >= 2.5 for e in events if isinstance(e, SpeechStart))


def test_gate_cuts_monologues_and_flush_closes_an_open_utterance(ko_speech: bytes) -> None:
    gate = VoiceGate(GateSettings(max_utterance_s=1.0))
    events = gate.push(ko_speech[: len(ko_speech) * 3 // 4])
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends and all(e.forced for e in ends)
    assert gate.speaking
    tail = gate.flush()
    assert isinstance(tail[-1], SpeechEnd) and not tail[-1].forced
    assert not gate.speaking


# -- the stream -------------------------------------------------------------------------


@pytest.mark.e2e
async def test_korean_webrtc_audio_gives_partials_then_one_final(
    ko: SpeechModel, ko_speech: bytes, budget: RecognitionBudget
) -> None:
    sink = Sink()
    metrics = CaptionMetrics(CollectorRegistry())
    stream = CaptionStream(
        ko, sink, speaker="alice", phrases=KO_PHRASES, budget=budget, metrics=metrics
    )
    frames = webrtc_frames(silence(1.0) + ko_speech + silence(1.0))
    await feed(stream, frames, pace=0.005)  # 4x real time
    await stream.close()

    assert sink.partials, "no partial captions"
    final = sink.finals[-1]
    assert len(sink.finals) == 1
    assert final.text.split() == KO_WORDS
    assert {e.segment_id for e in sink.events} == {final.segment_id}
    assert all(e.speaker == "alice" and e.language == "ko" for e in sink.events)
    assert sink.events.index(final) == len(sink.events) - 1
    # stream times: the speech starts after 1 s of silence (Vosk places words ~0.1 s early)
    assert [w.word for w in final.words] == KO_WORDS
    speech_end = 1.0 + len(ko_speech) / 32000
    assert 0.85 <= final.words[0].start < final.words[-1].end <= speech_end
    assert final.start == final.words[0].start and final.end == final.words[-1].end
    assert all(p.start >= 0.7 and p.end <= final.end + 0.6 for p in sink.partials)
    registry = metrics.registry
    assert registry.get_sample_value("commhub_captions_finals_total") == 1
    assert registry.get_sample_value("commhub_captions_partials_total") == len(sink.partials)
    assert registry.get_sample_value("commhub_captions_active_streams") == 0
    count = registry.get_sample_value("commhub_captions_stage_seconds_count", {"stage": "finalize"})
    assert count == 1


@pytest.mark.e2e
async def test_real_time_partials_keep_their_cadence_and_the_loop_stays_free(
    ko: SpeechModel, ko_speech: bytes, budget: RecognitionBudget
) -> None:
    sink = Sink()
    stream = CaptionStream(ko, sink, speaker="alice", phrases=KO_PHRASES, budget=budget)
    gaps: list[float] = []
    start = time.monotonic()
    pcm = silence(0.5) + ko_speech + silence(0.8)
    for i, chunk in enumerate(chunks(pcm, 20)):  # paced like a live track
        before = time.monotonic()
        await stream.push(chunk)
        gaps.append(time.monotonic() - before)
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
    await stream.close()
    assert max(gaps) < 0.05, "push() blocked the event loop"
    ends = [p.end for p in sink.partials]
    steps = np.diff(ends)
    assert len(ends) >= 6
    assert float(np.median(steps)) <= 0.25, f"partials every {np.median(steps):.2f} s of audio"
    assert sink.finals[-1].text.split() == KO_WORDS


async def test_silence_and_noise_give_no_captions(
    ko: SpeechModel, en: SpeechModel, budget: RecognitionBudget
) -> None:
    for model in (ko, en):
        sink = Sink()
        stream = CaptionStream(model, sink, speaker="x", budget=budget)
        await feed(stream, chunks(silence(2.0) + white_noise(6.0, level=0.05) + silence(1.0)))
        await stream.close()
        assert sink.events == [], f"{model.engine} captioned noise: {sink.events}"
        assert stream.stats.audio_seconds == pytest.approx(9.0, abs=0.05)


async def test_closing_mid_utterance_still_gives_its_final(
    ko: SpeechModel, ko_speech: bytes, budget: RecognitionBudget
) -> None:
    sink = Sink()
    stream = CaptionStream(ko, sink, speaker="alice", phrases=KO_PHRASES, budget=budget)
    await feed(stream, chunks(silence(0.5) + ko_speech[: len(ko_speech) - 3200]))
    await stream.close()  # the track ended while the speaker was still talking
    assert len(sink.finals) == 1
    assert sink.finals[0].text.split()[:3] == KO_WORDS[:3]
    with pytest.raises(RuntimeError):
        await stream.push(silence(0.1))
    await stream.close()  # idempotent


@pytest.mark.e2e
async def test_two_streams_at_once_keep_their_speakers_apart(
    ko: SpeechModel, en: SpeechModel, ko_speech: bytes, budget: RecognitionBudget
) -> None:
    alice, bob = Sink(), Sink()
    a = CaptionStream(ko, alice, speaker="alice", phrases=KO_PHRASES, budget=budget)
    b = CaptionStream(en, bob, speaker="bob", budget=budget)
    english = (POCKETSPHINX_DATA / "goforward.raw").read_bytes()
    await asyncio.gather(
        feed(a, chunks(silence(0.5) + ko_speech + silence(1.0) + ko_speech + silence(1.0)), 0.002),
        feed(b, chunks(silence(0.3) + english + silence(1.0) + english + silence(1.0)), 0.002),
    )
    await asyncio.gather(a.close(), b.close())
    assert [e.text.split() for e in alice.finals] == [KO_WORDS, KO_WORDS]
    assert len(bob.finals) == 2 and all(e.text.startswith("go forward") for e in bob.finals)
    assert {e.speaker for e in alice.events} == {"alice"}
    assert {e.speaker for e in bob.events} == {"bob"}
    a_ids = {e.segment_id for e in alice.events}
    b_ids = {e.segment_id for e in bob.events}
    assert len(a_ids) == 2 and len(b_ids) == 2 and not a_ids & b_ids
    # the second utterance is placed later in its own stream's time
    assert alice.finals[1].start > alice.finals[0].end + 1.0


@pytest.mark.e2e
async def test_over_budget_partials_are_dropped_but_every_final_arrives(
    ko: SpeechModel, ko_speech: bytes
) -> None:
    budget = RecognitionBudget(1)
    sinks = [Sink() for _ in range(3)]
    streams = [
        CaptionStream(ko, s, speaker=f"s{i}", phrases=KO_PHRASES, budget=budget)
        for i, s in enumerate(sinks)
    ]
    pcm = silence(0.3) + (ko_speech + silence(0.8)) * 3
    # unpaced: audio arrives far faster than one thread decodes three streams
    await asyncio.gather(*(feed(st, chunks(pcm)) for st in streams))
    await asyncio.gather(*(st.close() for st in streams))
    budget.shutdown()
    for stream, sink in zip(streams, sinks, strict=True):
        assert stream.stats.dropped_partials > 0
        assert stream.stats.dropped_utterances == 0
        assert [e.text.split() for e in sink.finals] == [KO_WORDS] * 3


async def test_a_stalled_recognizer_sheds_the_oldest_speech_within_the_bound(
    ko: SpeechModel, ko_speech: bytes
) -> None:
    """The recognizer's only thread is taken: speech piles up, and never past the bound."""
    budget = RecognitionBudget(1)
    stuck = threading.Event()
    blocker = asyncio.ensure_future(budget.run(stuck.wait))
    sink = Sink()
    metrics = CaptionMetrics(CollectorRegistry())
    settings = StreamSettings(max_backlog_s=5.0)
    stream = CaptionStream(
        ko, sink, speaker="s", phrases=KO_PHRASES, budget=budget, settings=settings,
        metrics=metrics,
    )  # fmt: skip
    # three utterances of ~4 s (pre-roll and trailing silence included), far faster than
    # real time: the first is taken by the (waiting) worker, the others queue behind it
    peak = 0.0
    try:
        for chunk in chunks(silence(0.3) + (ko_speech + silence(0.8)) * 3):
            await stream.push(chunk)
            peak = max(peak, stream.backlog_seconds)
            await asyncio.sleep(0)
        assert peak <= 5.0 + settings.chunk_ms / 1000  # the bound, give or take one chunk
        assert sink.events == []  # nothing decoded yet
        # the oldest two went: the first cut where the worker stood, the second whole
        assert stream.stats.dropped_utterances == 2
        assert 6.0 < stream.stats.shed_seconds < 9.0
    finally:
        stuck.set()
        await blocker
        await stream.close()
        budget.shutdown()
    # the newest utterance was kept whole and is captioned once the recognizer is back
    assert sink.finals and sink.finals[-1].text.split() == KO_WORDS
    assert metrics.registry.get_sample_value("commhub_captions_dropped_utterances_total") == 2


@pytest.mark.e2e
async def test_english_recordings_through_the_stream(
    en: SpeechModel, budget: RecognitionBudget
) -> None:
    recordings = librivox()
    sink = Sink()
    stream = CaptionStream(en, sink, speaker="reader", budget=budget)
    for wav, _ in recordings:
        await feed(stream, chunks(wav_pcm(wav) + silence(1.5), 100), 0.001)
    await stream.close()
    hypothesis = " ".join(e.text for e in sink.finals)
    errors, words = word_errors(" ".join(ref for _, ref in recordings), hypothesis)
    assert words > 60
    assert errors / words <= LIBRIVOX_WER_BOUND, f"WER {errors / words:.2f}: {hypothesis}"
