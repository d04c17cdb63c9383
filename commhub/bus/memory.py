"""In-process bus: one node, events serialised once and handed to each inbox."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from commhub.bus.base import Inbox
from commhub.protocol import encode


class MemoryBus:
    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, Inbox]] = {}

    def attach(self, room: str, participant_id: str, inbox: Inbox) -> None:
        self._rooms.setdefault(room, {})[participant_id] = inbox

    def detach(self, room: str, participant_id: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(participant_id, None)
            if not members:
                del self._rooms[room]

    async def publish(
        self,
        room: str,
        msg: dict[str, Any],
        *,
        to: str | Collection[str] | None = None,
        exclude: str | None = None,
    ) -> int:
        members = self._rooms.get(room)
        if not members:
            return 0
        data = encode(msg)
        if to is not None:
            targets = [members.get(pid) for pid in ((to,) if isinstance(to, str) else to)]
            reached = [inbox for inbox in targets if inbox is not None]
            for inbox in reached:
                inbox.deliver(data)
            return len(reached)
        count = 0
        for pid, inbox in list(members.items()):
            if pid != exclude:
                inbox.deliver(data)
                count += 1
        return count

    async def close(self) -> None:
        self._rooms.clear()
