"""What caption tests collect from a CaptionStream."""

from __future__ import annotations

from commhub.captions.events import CaptionEvent


class Sink:
    """A stream's emit callback that keeps every event."""

    def __init__(self) -> None:
        self.events: list[CaptionEvent] = []

    async def __call__(self, event: CaptionEvent) -> None:
        self.events.append(event)

    @property
    def finals(self) -> list[CaptionEvent]:
        return [e for e in self.events if e.final]

    @property
    def partials(self) -> list[CaptionEvent]:
        return [e for e in self.events if not e.final]
