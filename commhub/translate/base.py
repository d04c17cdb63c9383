"""The engine protocol and the result type every caller of the translation layer sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Status = Literal["ok", "same", "unavailable", "failed", "too_long"]


@runtime_checkable
class Translator(Protocol):
    """A translation engine. Calls block; the service runs them in worker threads."""

    name: str

    def pairs(self) -> set[tuple[str, str]]:
        """Installed direct pairs as ISO 639-1 codes, e.g. {("en", "es")}."""
        ...

    def translate_batch(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """One output per input, same order. Raises on engine trouble."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Translation:
    text: str
    source: str
    target: str
    engine: str | None
    status: Status
    cached: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "same")


class TranslationError(Exception):
    """An engine could not translate (process died, model broken, timeout...)."""


class PartialFailure(TranslationError):
    """Raised by translate_batch when only some texts failed: one outcome per text, in
    order (a translation, or the error of that text), so the others are not lost with it."""

    def __init__(self, outcomes: Sequence[str | TranslationError]) -> None:
        self.outcomes = list(outcomes)
        failed = [o for o in self.outcomes if isinstance(o, TranslationError)]
        first = failed[0] if failed else "none"
        super().__init__(f"{len(failed)} of {len(self.outcomes)} texts failed, first: {first}")
