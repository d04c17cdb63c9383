"""A participant: one identity's live connection in one room."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


class Connection(Protocol):
    """What a room needs of a participant's socket."""

    def deliver(self, data: str) -> None: ...

    async def end(self, reason: str, message: str, ref: str | None = None) -> None: ...


def new_participant_id() -> str:
    return "PA_" + secrets.token_urlsafe(9)


@dataclass(eq=False)
class Participant:
    identity: str
    name: str
    role: str
    grants: frozenset[str]
    speak: str
    read: str
    conn: Connection
    id: str = field(default_factory=new_participant_id)
    joined_at: float = field(default_factory=time.time)

    def can(self, grant: str) -> bool:
        return grant in self.grants or "admin" in self.grants

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "name": self.name,
            "role": self.role,
            "speak": self.speak,
            "read": self.read,
            "grants": sorted(self.grants),
            "joined_at": round(self.joined_at, 3),
        }

    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "identity": self.identity, "name": self.name}
