"""What a report carries: per participant, the last N chat lines and final captions others
received from it, with the translations they read, kept in memory as they are delivered."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

Line = dict[str, Any]


class Evidence:
    """Fed with every room message the hub publishes (`seen`, one call in its delivery path);
    keeps chat and final captions only. Bounded: `lines` per participant, the `participants`
    most recently heard from (the oldest ring goes first)."""

    def __init__(self, lines: int, participants: int) -> None:
        self.lines = max(1, lines)
        self.participants = max(1, participants)
        # (room, participant id) -> (kind, id or segment) -> line
        self._rings: OrderedDict[tuple[str, str], OrderedDict[tuple[str, str], Line]] = (
            OrderedDict()
        )

    def seen(self, room: str, msg: dict[str, Any]) -> None:
        """A message on its way to readers: a chat or final caption starts a line, a copy with
        a `translation` adds that translation to its line."""
        kind = msg.get("type")
        if kind == "chat":
            who, key, ts = msg["from"]["id"], msg["id"], msg["ts"]
        elif kind == "caption" and msg.get("final"):
            who, key = msg["speaker"], msg["segment"]
            ts = round(msg["track_start"] + msg["end"], 3)
        else:
            return
        ring = self._rings.get((room, who))
        if ring is None:
            ring = self._rings[(room, who)] = OrderedDict()
            while len(self._rings) > self.participants:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end((room, who))
        line = ring.get((kind, key))
        if line is None:
            if len(ring) >= self.lines and ts < next(iter(ring.values()))["ts"]:
                return  # a late copy of a line the ring has already let go
            line = {"kind": kind, "id": key, "ts": ts, "lang": msg["lang"], "text": msg["text"]}
            line["translations"] = {}
            ring[(kind, key)] = line
            while len(ring) > self.lines:
                ring.popitem(last=False)
        info = msg.get("translation")
        if info is not None:
            line["translations"][info["lang"]] = dict(info)

    def of(self, room: str, participant_id: str) -> list[Line]:
        """A copy of a participant's lines, oldest first."""
        ring = self._rings.get((room, participant_id))
        if ring is None:
            return []
        return [{**line, "translations": dict(line["translations"])} for line in ring.values()]
