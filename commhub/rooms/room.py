"""A room: who is in it, and the recent chat a newcomer gets."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from commhub.rooms.participant import Participant


def base_language(tag: str) -> str:
    """ "en-US" -> "en": readers are grouped, and translations kept, by base language."""
    return tag.split("-", 1)[0].lower()


@dataclass(eq=False)
class Room:
    name: str
    capacity: int
    history_size: int
    participants: dict[str, Participant] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    empty_since: float | None = None
    history: deque[dict[str, Any]] = field(init=False)
    # chat id -> read language -> the `translation` made when it was sent, for newcomers
    translations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    recording: bool = False  # caption finals (and their translations) go to the store

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)

    def remember(self, chat: dict[str, Any]) -> None:
        """Keep a chat message for newcomers (the oldest, and its translations, fall off)."""
        if not self.history.maxlen:
            return
        if len(self.history) == self.history.maxlen:
            self.translations.pop(self.history[0]["id"], None)
        self.history.append(chat)
        self.translations[chat["id"]] = {}

    def seed(self, stored: list[dict[str, Any]]) -> None:
        """Restore history from the store (messages with "translations": {lang: info})."""
        for m in stored:
            msg = {k: v for k, v in m.items() if k != "translations"}
            self.remember(msg)
            if msg["id"] in self.translations:
                self.translations[msg["id"]].update(m.get("translations", {}))

    def recent_chat(self, read: str) -> list[dict[str, Any]]:
        """The chat history as a reader of `read` sees it: translated where it was."""
        lang = base_language(read)
        return [
            {**m, "translation": t} if (t := self.translations.get(m["id"], {}).get(lang)) else m
            for m in self.history
        ]

    def forget(self, identity: str | None = None, before: float | None = None) -> int:
        """Drop chat from the history newcomers get: an identity's (erasure), or what was
        sent before a time (retention); how many."""
        gone = [
            m
            for m in self.history
            if (identity is not None and m["from"].get("identity") == identity)
            or (before is not None and m["ts"] < before)
        ]
        for m in gone:
            self.history.remove(m)
            self.translations.pop(m["id"], None)
        return len(gone)

    def by_identity(self, identity: str) -> Participant | None:
        return next((p for p in self.participants.values() if p.identity == identity), None)

    def languages(self) -> dict[str, list[str]]:
        return {
            "speak": sorted({p.speak for p in self.participants.values()}),
            "read": sorted({p.read for p in self.participants.values()}),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capacity": self.capacity,
            "participants": len(self.participants),
            "created_at": round(self.created_at, 3),
            "languages": self.languages(),
        }
