"""What the captions pipeline emits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..speech.base import Word


@dataclass(frozen=True)
class CaptionEvent:
    """A partial or final caption of one utterance.

    Partials and the final of one utterance share ``segment_id``. Times are seconds of
    audio since the stream started (silence included), word times too.
    """

    segment_id: str
    speaker: str
    language: str
    final: bool
    text: str
    start: float
    end: float
    words: tuple[Word, ...] = ()
    confidence: float | None = None


OnCaption = Callable[[CaptionEvent], Awaitable[None]]
