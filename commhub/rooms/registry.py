"""The room registry: join, leave, replace, and forget rooms left empty for too long."""

from __future__ import annotations

import time
from collections.abc import Iterator

from commhub.rooms.participant import Participant
from commhub.rooms.room import Room


class RoomFull(Exception):
    pass


class Rooms:
    def __init__(self, capacity: int, history_size: int, empty_timeout: float) -> None:
        self.capacity = capacity
        self.history_size = history_size
        self.empty_timeout = empty_timeout
        self._rooms: dict[str, Room] = {}

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def participant_count(self) -> int:
        return sum(len(r.participants) for r in self._rooms.values())

    def join(self, room_name: str, participant: Participant) -> tuple[Room, Participant | None]:
        """Add participant; returns the room and the connection it replaces (same identity)."""
        room = self._rooms.get(room_name)
        if room is None:
            room = Room(room_name, self.capacity, self.history_size)
            self._rooms[room_name] = room
        old = room.by_identity(participant.identity)
        if old is None and len(room.participants) >= room.capacity:
            raise RoomFull(f"room {room_name!r} is full ({room.capacity} participants)")
        if old is not None:
            del room.participants[old.id]
        room.participants[participant.id] = participant
        room.empty_since = None
        return room, old

    def leave(self, room_name: str, participant_id: str) -> Participant | None:
        room = self._rooms.get(room_name)
        if room is None:
            return None
        gone = room.participants.pop(participant_id, None)
        if not room.participants:
            room.empty_since = time.monotonic()
        return gone

    def drop(self, room_name: str) -> Room | None:
        return self._rooms.pop(room_name, None)

    def reap(self, now: float | None = None) -> list[str]:
        """Forget rooms empty for longer than the timeout; returns their names."""
        now = time.monotonic() if now is None else now
        gone = [
            name
            for name, room in self._rooms.items()
            if not room.participants
            and room.empty_since is not None
            and now - room.empty_since >= self.empty_timeout
        ]
        for name in gone:
            del self._rooms[name]
        return gone
