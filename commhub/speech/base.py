"""The speech-recognition contract every engine implements (no engine imports here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds from the start of the current utterance."""

    word: str
    start: float
    end: float
    conf: float


@dataclass(frozen=True)
class Hypothesis:
    text: str
    words: tuple[Word, ...] = ()
    confidence: float | None = None


class Recognizer(Protocol):
    """One per audio stream, reused across utterances.

    Not thread-safe: call it from one worker thread at a time. Audio is s16le mono
    16 kHz. Word times are relative to the first sample accepted after the last
    ``finish()`` (the pipeline adds the utterance's offset in the stream).
    """

    def accept(self, pcm: bytes) -> Hypothesis | None:
        """Decode more audio; return the current partial if its text changed."""
        ...

    def finish(self) -> Hypothesis:
        """End of utterance: the final hypothesis (text may be ""); resets for the next one."""
        ...

    def close(self) -> None: ...


class SpeechModel(Protocol):
    """A loaded model: loaded once per process, shared by all streams."""

    language: str
    engine: str

    def recognizer(self, phrases: Sequence[str] | None = None) -> Recognizer:
        """A new recognizer; ``phrases`` restricts the vocabulary where the engine can."""
        ...


class ModelNotFound(Exception):
    """No usable model for a language; the message says where we looked and how to fix it."""

    def __init__(self, language: str, message: str) -> None:
        super().__init__(message)
        self.language = language


SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * 2


def mean_confidence(words: Sequence[Word]) -> float | None:
    return sum(w.conf for w in words) / len(words) if words else None
