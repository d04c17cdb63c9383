"""The Bus protocol: publish an event to a room (or one participant), delivered to inboxes."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol


class Inbox(Protocol):
    """A participant's connection as the bus sees it: deliver must not block."""

    def deliver(self, data: str) -> None: ...


class Bus(Protocol):
    def attach(self, room: str, participant_id: str, inbox: Inbox) -> None: ...

    def detach(self, room: str, participant_id: str) -> None: ...

    async def publish(
        self,
        room: str,
        msg: dict[str, Any],
        *,
        to: str | Collection[str] | None = None,
        exclude: str | None = None,
    ) -> int:
        """Send msg to everyone in room (or only `to`: one id or several, or all but
        `exclude`); returns how many inboxes it reached on this node."""
        ...

    async def close(self) -> None: ...
