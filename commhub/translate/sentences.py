"""Offline sentence splitting for the neural engine.

Argos' own splitter (minisbd/stanza) downloads a model on first use, which must never
happen at run time. Captions and chat lines are already sentence-sized, so a line is
translated whole; only lines longer than a model comfortably handles are cut at
sentence-final punctuation.
"""

from __future__ import annotations

import re

LONG_LINE = 400  # characters; Argos models are trained on sentences well below this
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;])\s+")

Segment = tuple[str, str]  # (text to translate, separator that followed it)


def split(text: str, long_line: int = LONG_LINE) -> list[Segment]:
    segments: list[Segment] = []
    for line in text.split("\n"):
        parts = [line] if len(line) <= long_line else _SENTENCE_END.split(line)
        segments.extend((part, " ") for part in parts)
        if segments:
            segments[-1] = (segments[-1][0], "\n")
    if segments:
        segments[-1] = (segments[-1][0], "")
    return segments


def join(segments: list[Segment], translated: list[str]) -> str:
    return "".join(out + sep for (_, sep), out in zip(segments, translated, strict=True))
