"""Warm recognizers before anyone speaks: the speech that warms them, and the thread that
keeps a model's pool of warm spares full.

A Vosk recognizer of a lookahead model (the small models) composes its decoding graph as it
decodes and keeps what it composed: fresh, a sentence costs about 5x the CPU it costs once
the recognizer is warm (measured, small Korean model: 1.64 CPU-s against 0.31). Only speech
warms it (silence or noise explore nothing), but speech in other words than the speaker's
does most of it (after six unrelated sentences the same sentence cost 0.41 CPU-s). So the
warm-up is paid once per recognizer, on a low-priority thread, before a speaker needs it.

The speech: ``<folder>/<language>.wav`` when present (a recording of real speech in the
language is best: an operator may put any audio file there), else synthesised with espeak-ng
from a few everyday sentences and cached there. Without either the pool still keeps spares,
only cold ones (and the log says so).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import av
import numpy as np

from .base import BYTES_PER_SECOND, SAMPLE_RATE

log = logging.getLogger(__name__)

# Everyday sentences of a service desk or a meeting, a few seconds each. None of them is a
# benchmark's or a test's sentence: the warm-up must not have seen what it is measured on.
TEXT: dict[str, tuple[str, ...]] = {
    "ko": (
        "여권을 새로 만들려면 어떤 서류가 필요한가요",
        "다음 주 화요일 오전에 예약을 잡아 드릴게요",
        "죄송하지만 조금만 천천히 말씀해 주시겠어요",
        "이 양식에 성함과 연락처를 적어 주세요",
        "버스 정류장은 건물 뒤쪽으로 나가시면 있습니다",
        "오늘 회의 자료는 이메일로 보내 드렸습니다",
    ),
    "en": (
        "I would like to renew my residence card this week",
        "Could you tell me which documents I need to bring",
        "Your appointment is on Thursday at half past ten",
        "Please fill in your name and phone number on this form",
        "The bus stop is just behind the main building",
        "We sent the meeting notes to everyone by email",
    ),
}
CHUNK_S = 0.5  # the warm-up is fed as a stream would be, and can stop between chunks


@runtime_checkable
class Warmable(Protocol):
    """A model whose recognizers get faster with use and can be warmed ahead of time."""

    language: str
    idle_max: int  # idle recognizers kept; spares are kept among them
    lent: int  # recognizers streams hold
    taken: threading.Event  # set when a stream takes an idle recognizer

    @property
    def idle(self) -> int: ...

    def warm_one(self, pcm: bytes, chunk_bytes: int, stop: threading.Event) -> bool:
        """A new recognizer fed ``pcm`` in chunks, then idle; False if ``stop`` came first or
        the pool had no room for it (blocking: seconds of CPU)."""
        ...


def warmup_audio(language: str, folder: Path) -> bytes | None:
    """s16le mono 16 kHz speech in ``language`` to warm recognizers with, or None (blocking:
    call it on a worker thread)."""
    path = folder / f"{language.split('-')[0]}.wav"
    if not path.exists() and not _synthesise(language, path):
        return None
    try:
        return _read(path)
    except (OSError, av.FFmpegError, ValueError) as exc:
        log.warning("warm-up speech %s unreadable (%s): recognizers start cold", path, exc)
        return None


def _synthesise(language: str, path: Path) -> bool:
    text = TEXT.get(language.split("-")[0])
    espeak = shutil.which("espeak-ng")
    if not text or espeak is None:
        why = "no warm-up sentences for it" if not text else "espeak-ng is not installed"
        log.info("captions for %s: recognizers start cold (%s; put a recording of speech at %s)",
                 language, why, path)  # fmt: skip
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    try:
        # one sentence per line; espeak-ng pauses between them
        subprocess.run([espeak, "-v", language, "-w", str(partial), "\n".join(text)],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("captions for %s: espeak-ng failed (%s): recognizers start cold", language, exc)
        partial.unlink(missing_ok=True)
        return False
    partial.replace(path)
    return True


def _read(path: Path) -> bytes:
    """Any audio file as s16le mono 16 kHz."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frames: list[av.AudioFrame] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            frames += resampler.resample(frame)
    frames += resampler.resample(None)
    pcm = b"".join(np.asarray(f.to_ndarray()).tobytes() for f in frames)
    if len(pcm) < BYTES_PER_SECOND:
        raise ValueError("less than a second of audio")
    return pcm


class Warmer:
    """Keeps ``spares`` warm idle recognizers in a model's pool, from one thread at the lowest
    CPU priority: live decoding always goes first, the warm-up takes what is left.

    At most ``cap`` recognizers live (held by streams or idle; the node's stream limit): a
    full node needs no spare, and streams that end give theirs back to the pool, so past
    the busiest moment so far nothing is warmed again.
    """

    def __init__(self, model: Warmable, pcm: bytes, spares: int, cap: int | None = None) -> None:
        self.model = model
        self.spares = spares
        self.cap = spares if cap is None else cap
        self.warmed = 0  # recognizers warmed so far
        self.cpu_seconds = 0.0  # what warming them cost (this thread's CPU time)
        self._pcm = pcm
        self._stop = threading.Event()
        model.idle_max = max(model.idle_max, spares)  # returned ones refill the pool too
        self._thread = threading.Thread(
            target=self._run, name=f"warm-{model.language}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: the niceness is per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        chunk = int(CHUNK_S * BYTES_PER_SECOND)
        while not self._stop.is_set():
            self.model.taken.clear()
            if not self.wanted:
                self.model.taken.wait()
                continue
            started = time.thread_time()
            try:
                if self.model.warm_one(self._pcm, chunk, self._stop):
                    self.warmed += 1
            except Exception:
                log.exception("captions for %s: warming a recognizer failed", self.model.language)
                return
            finally:
                self.cpu_seconds += time.thread_time() - started

    @property
    def wanted(self) -> bool:
        idle = self.model.idle
        return idle < self.spares and idle + self.model.lent < self.cap

    def stop(self) -> None:
        """Stop warming (blocking: the current chunk finishes first; call it off the loop)."""
        self._stop.set()
        self.model.taken.set()
        if self._thread.is_alive():
            self._thread.join()
