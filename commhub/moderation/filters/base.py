"""The filter protocol: every engine finds spans of one text it objects to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Hit:
    """[start, end) of the original text, and the rule that fired (engine:detail)."""

    start: int
    end: int
    rule: str


@runtime_checkable
class Filter(Protocol):
    """A text filter for some languages. `find` is pure CPU and cheap (tens of microseconds
    for a caption line): the policy calls it inline and moves long texts to a thread."""

    name: str

    def serves(self, lang: str) -> bool:
        """Whether this filter applies to text in `lang` (ISO 639-1 base code)."""
        ...

    def find(self, text: str, lang: str) -> list[Hit]: ...
