"""Word error rate and CPU of a decoder preset on real English recordings, through the two
paths captions take: `commhub transcribe` (transcribe_file) and the live CaptionStream fed
WebRTC-like frames. Shared by tests/test_decoder_presets.py and scripts/bench_accuracy.py.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from commhub.captions import (
    CaptionEvent,
    CaptionStream,
    GateSettings,
    RecognitionBudget,
    StreamSettings,
)
from commhub.captions.transcribe import transcribe_file
from commhub.config import Settings
from commhub.speech import SpeechModels
from tests.helpers.audio import POCKETSPHINX_DATA, librivox, silence, wav_pcm, webrtc_frames
from tests.helpers.audio import word_errors as count_errors
from tests.helpers.captions import Sink

Recordings = list[tuple[Path, str]]
FRAME_S = 0.02  # webrtc_frames' frame length
TRAILING_SILENCE_S = 1.0  # after each recording: the gate ends the utterance as in a call


def cards() -> Recordings:
    """(wav, reference) of pocketsphinx-testdata's "cards" recordings (a second speaker)."""
    folder = POCKETSPHINX_DATA / "cards"
    listing = folder / "cards.transcription"
    assert listing.is_file(), f"{listing} missing: apt-get install pocketsphinx-testdata"
    refs = re.findall(r"<s>(.*?)</s> \((.*?)\)", listing.read_text())
    return [(folder / f"{fid}.wav", text.strip()) for text, fid in refs]


SETS = {"librivox": librivox, "cards": cards}


@dataclass
class Run:
    """One preset through one path over one set of recordings."""

    errors: int = 0
    words: int = 0
    audio_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU (every thread) while the path ran
    wall_s: float = 0.0
    # live, real time: seconds from an utterance's end in the audio to its final arriving
    final_lag_s: list[float] = field(default_factory=list)
    shed_s: float = 0.0  # live: speech thrown away (must be 0 for a fair comparison)
    hypotheses: list[str] = field(default_factory=list)

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else float("nan")

    def add(self, reference: str, hypothesis: str, audio_s: float) -> None:
        errors, words = count_errors(reference, hypothesis)
        self.errors += errors
        self.words += words
        self.audio_s += audio_s
        self.hypotheses.append(hypothesis)


def fresh_models(models_dir: Path, engine: str | None = None, language: str = "en") -> SpeechModels:
    """A registry of its own: pocketsphinx decoders carry their cepstral mean (CMN) from
    one utterance to the next, so a run on a used decoder depends on what it heard before.
    Every run starts from new decoders and then hears the same recordings in order."""
    return SpeechModels(models_dir, {language: engine} if engine else None)


def transcribe_run(
    models: SpeechModels, recordings: Recordings, decoder: str, language: str = "en"
) -> Run:
    """Each recording through transcribe_file, as `commhub transcribe --decoder` runs it
    (``models``: from fresh_models, for a result that does not depend on earlier runs)."""
    models.get(language, decoder)  # loading is not decoding: keep it out of the measure
    durations = [_seconds(wav_pcm(wav)) for wav, _ in recordings]
    run = Run()
    cpu, wall = time.process_time(), time.perf_counter()
    for (wav, reference), seconds in zip(recordings, durations, strict=True):
        out = io.StringIO()
        transcribe_file(wav, language, models, "txt", out, False, None, decoder)
        run.add(reference, " ".join(out.getvalue().split()), seconds)
    run.cpu_s, run.wall_s = time.process_time() - cpu, time.perf_counter() - wall
    return run


def live_settings() -> StreamSettings:
    """What the hub's live captions use (commhub.captions.live), from the default config."""
    s = Settings()
    return StreamSettings(
        gate=GateSettings(end_silence_ms=s.caption_end_silence_ms),
        max_backlog_s=s.caption_max_backlog,
        max_lag_s=s.caption_max_lag,
    )


async def live_run(
    models: SpeechModels,
    recordings: Recordings,
    decoder: str,
    speed: float = 1.0,
    language: str = "en",
) -> Run:
    """Each recording, then silence, as 48 kHz 20 ms frames into a live CaptionStream (one
    per recording, as one speaker per call); ``speed`` 1: real time, 0: as fast as push
    returns (live mode still sheds what it cannot keep up with: see ``shed_s``).
    ``models``: from fresh_models, as for transcribe_run."""
    model = await models.load(language, decoder)
    audio = [wav_pcm(wav) for wav, _ in recordings]
    budget = RecognitionBudget()
    run = Run()
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        for (_, reference), pcm in zip(recordings, audio, strict=True):
            frames = webrtc_frames(pcm + silence(TRAILING_SILENCE_S))
            sink = _Stamped()
            stream = CaptionStream(
                model, sink, speaker="reader", settings=live_settings(), budget=budget
            )
            start = time.monotonic()
            for n, frame in enumerate(frames):
                pause = start + (n + 1) * FRAME_S / speed - time.monotonic() if speed else 0.0
                await asyncio.sleep(max(0.0, pause))
                await stream.push(frame)
            await stream.close()
            if speed:
                run.final_lag_s += [at - start - e.end / speed for e, at in sink.stamped]
            run.shed_s += stream.stats.shed_seconds
            run.add(reference, " ".join(e.text for e in sink.finals if e.text), _seconds(pcm))
    finally:
        budget.shutdown()
    run.cpu_s, run.wall_s = time.process_time() - cpu, time.perf_counter() - wall
    return run


class _Stamped(Sink):
    """A Sink that also notes when each final (with text) arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.stamped: list[tuple[CaptionEvent, float]] = []

    async def __call__(self, event: CaptionEvent) -> None:
        if event.final and event.text:
            self.stamped.append((event, time.monotonic()))
        await super().__call__(event)


def _seconds(pcm: bytes) -> float:
    return len(pcm) / 32000  # s16le mono 16 kHz
