"""Transcribe a media file with the live pipeline: decode, resample, gate, recognize."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, TextIO

import av
from tqdm import tqdm

from commhub.timecode import timecode

from ..speech.registry import SpeechModels
from .events import CaptionEvent
from .stream import CaptionStream, StreamSettings

Format = Literal["vtt", "srt", "json", "txt"]
FORMATS: tuple[Format, ...] = ("vtt", "srt", "json", "txt")
_BATCH_S = 2.0  # audio decoded per worker-thread call


def transcribe_file(
    path: str | Path,
    language: str,
    models: SpeechModels,
    fmt: Format = "txt",
    out: TextIO = sys.stdout,
    progress: bool = True,
    phrases: Sequence[str] | None = None,
    decoder: str = "default",
) -> list[CaptionEvent]:
    """Blocking entry point (for the CLI); runs its own event loop."""
    return asyncio.run(
        atranscribe_file(path, language, models, fmt, out, progress, phrases, decoder)
    )


async def atranscribe_file(
    path: str | Path,
    language: str,
    models: SpeechModels,
    fmt: Format = "txt",
    out: TextIO = sys.stdout,
    progress: bool = True,
    phrases: Sequence[str] | None = None,
    decoder: str = "default",
) -> list[CaptionEvent]:
    """Write the transcript (finals only) of ``path`` to ``out``; also return the finals.

    ``decoder`` is the engine's decoder preset (default, fast: less CPU, maybe less accurate).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model = await models.load(language, decoder)
    finals: list[CaptionEvent] = []

    async def collect(event: CaptionEvent) -> None:
        if event.final and event.text:
            finals.append(event)

    container = await asyncio.to_thread(av.open, str(path))
    try:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        audio = container.streams.audio[0]
        total = (
            float(audio.duration * audio.time_base) if audio.duration and audio.time_base else None
        )
        if total is None and container.duration:
            total = container.duration / av.time_base
        settings = StreamSettings(partials=False, lossless=True)
        frames = container.decode(audio)
        with tqdm(
            total=round(total, 1) if total else None,
            unit="s",
            desc=Path(path).name,
            file=sys.stderr,
            disable=not progress,
            bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s [{elapsed}<{remaining}]",
        ) as bar:
            async with CaptionStream(
                model, collect, speaker="", phrases=phrases, settings=settings
            ) as stream:
                while batch := await asyncio.to_thread(_next_batch, frames):
                    for frame in batch:
                        await stream.push(frame)
                        step = frame.samples / frame.sample_rate
                        if bar.total is not None:  # container durations are approximate
                            step = max(0.0, min(step, bar.total - bar.n))
                        bar.update(step)
    finally:
        container.close()
    out.write(render(finals, fmt, language))
    out.flush()
    return finals


def _next_batch(frames: Iterator[av.AudioFrame]) -> list[av.AudioFrame]:
    batch: list[av.AudioFrame] = []
    seconds = 0.0
    for frame in frames:
        batch.append(frame)
        seconds += frame.samples / frame.sample_rate
        if seconds >= _BATCH_S:
            break
    return batch


def render(finals: Sequence[CaptionEvent], fmt: Format, language: str) -> str:
    if fmt == "txt":
        return "".join(f"{e.text}\n" for e in finals)
    if fmt == "json":
        doc = {
            "language": language,
            "segments": [
                {
                    "id": e.segment_id,
                    "start": round(e.start, 3),
                    "end": round(e.end, 3),
                    "text": e.text,
                    "confidence": e.confidence,
                    "words": [
                        {
                            "word": w.word,
                            "start": round(w.start, 3),
                            "end": round(w.end, 3),
                            "conf": w.conf,
                        }
                        for w in e.words
                    ],
                }
                for e in finals
            ],
        }
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return "".join(
            f"{i}\n{timecode(e.start, ',')} --> {timecode(e.end, ',')}\n{e.text}\n\n"
            for i, e in enumerate(finals, 1)
        )
    return "WEBVTT\n\n" + "".join(
        f"{timecode(e.start, '.')} --> {timecode(e.end, '.')}\n{e.text}\n\n" for e in finals
    )
