"""Strikes: moderated messages counted per participant (room, identity), and the mute that
follows `limit` of them, until a moderator lifts it (`lift`, wired to the `moderate`
message's lift action). Keyed by identity, so leaving and joining again does not clear them.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_TRACKED = 100_000  # (room, identity) pairs remembered; the oldest untouched fall off


class Strikes:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # strikes that mute; 0: never
        self._count: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._muted: set[tuple[str, str]] = set()

    def add(self, room: str, identity: str) -> tuple[int, bool]:
        """One more strike: (strikes now, whether this one muted the participant)."""
        key = (room, identity)
        count = self._count.pop(key, 0) + 1
        self._count[key] = count
        while len(self._count) > MAX_TRACKED:
            old, _ = self._count.popitem(last=False)
            self._muted.discard(old)
        if self.limit and count >= self.limit and key not in self._muted:
            self._muted.add(key)
            return count, True
        return count, False

    def count(self, room: str, identity: str) -> int:
        return self._count.get((room, identity), 0)

    def muted(self, room: str, identity: str) -> bool:
        return (room, identity) in self._muted

    def lift(self, room: str, identity: str) -> bool:
        """A moderator lifts the strike-mute and clears the strikes; True if there was a
        mute (or strikes) to lift."""
        key = (room, identity)
        had = key in self._muted or key in self._count
        self._muted.discard(key)
        self._count.pop(key, None)
        return had
