"""A desk's definition (what `commhub desk create` and the admin API set), checked here."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from commhub import auth
from commhub.desks import hours as hours_

ASSIGN = ("auto", "manual")
TITLE_MAX = 120
MESSAGE_MAX = 500
MAX_LIST = 32
MAX_QUEUE = 10_000
DEFAULT_CLOSED = "The desk is closed now. Please come back during opening hours."
FIELDS = (
    "name", "title", "languages", "topics", "hours", "timezone", "closed_message",
    "max_queue", "assign",
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # newline and tab are allowed in messages


class DeskError(Exception):
    """A refused desk request: HTTP status, stable code, words for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad(message: str) -> DeskError:
    return DeskError(400, "invalid_request", message)


@dataclass(frozen=True)
class DeskDef:
    name: str
    title: str
    languages: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    hours: str | None = None  # None: always open
    timezone: str = "UTC"
    closed_message: str = DEFAULT_CLOSED
    max_queue: int = 100
    assign: str = "auto"
    created_at: float = field(default_factory=time.time)

    @cached_property
    def _spans(self) -> tuple[hours_.Span, ...]:
        return hours_.parse(self.hours) if self.hours else ()

    @cached_property
    def _zone(self) -> ZoneInfo:
        return hours_.zone(self.timezone)

    def is_open(self, now: float | None = None) -> bool:
        if not self.hours:
            return True
        return hours_.is_open(self._spans, self._zone, time.time() if now is None else now)

    def opens_at(self, now: float | None = None) -> float | None:
        """The next opening when closed now, else None."""
        now = time.time() if now is None else now
        if self.is_open(now):
            return None
        return hours_.next_opening(self._spans, self._zone, now)

    def ref(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title}

    def wire(self) -> dict[str, Any]:
        """The definition as the admin API shows it."""
        return {
            "name": self.name,
            "title": self.title,
            "languages": list(self.languages),
            "topics": list(self.topics),
            "hours": self.hours,
            "timezone": self.timezone,
            "closed_message": self.closed_message,
            "max_queue": self.max_queue,
            "assign": self.assign,
            "created_at": round(self.created_at, 3),
        }

    def state_wire(self, now: float | None = None) -> dict[str, Any]:
        """The definition as desk_state shows it to agents."""
        return {
            "name": self.name,
            "title": self.title,
            "languages": list(self.languages),
            "topics": list(self.topics),
            "open": self.is_open(now),
            "opens_at": self.opens_at(now),
            "assign": self.assign,
            "max_queue": self.max_queue,
        }


def _text(value: Any, what: str, longest: int, multiline: bool = False) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        raise bad(f"{what} must be 1..{longest} characters")
    if (_CONTROL if multiline else re.compile(r"[\x00-\x1f\x7f]")).search(value):
        raise bad(f"{what} must not contain control characters")
    return value.strip()


def _list(value: Any, what: str, check: Any, example: str) -> tuple[str, ...]:
    if isinstance(value, str):  # the CLI's "ko,en,es"
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise bad(f"{what} must be a list of at most {MAX_LIST} items")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not check(item):
            raise bad(f"{what}: invalid item {str(item)[:40]!r} (like {example})")
        if item not in out:
            out.append(item)
    return tuple(out)


def validate(spec: Any, *, default_max_queue: int = 100, current: DeskDef | None = None) -> DeskDef:
    """A definition from a request (a new desk, or changes to `current`); DeskError(400)
    names the wrong field."""
    if not isinstance(spec, dict):
        raise bad("the body must be a JSON object")
    unknown = set(spec) - set(FIELDS)
    if unknown:
        raise bad(f"unknown field(s) {sorted(unknown)[:10]}")
    if current is not None and "name" in spec and spec["name"] != current.name:
        raise bad("a desk's name cannot change")
    changes: dict[str, Any] = {}
    name = spec.get("name") if current is None else current.name
    if not isinstance(name, str) or not auth.valid_desk_name(name):
        raise bad("name must be 1..63 of a-z, 0-9 and '-', starting with a letter or digit")
    if "title" in spec:
        changes["title"] = _text(spec["title"], "title", TITLE_MAX)
    if "languages" in spec:
        changes["languages"] = _list(spec["languages"], "languages", auth.valid_language, "ko")
    if "topics" in spec:
        changes["topics"] = _list(spec["topics"], "topics", auth.valid_topic, "tax")
    if "hours" in spec:
        value = spec["hours"]
        if value in (None, ""):
            changes["hours"] = None
        else:
            try:
                hours_.parse(value)
            except ValueError as exc:
                raise bad(f"hours: {exc}") from None
            changes["hours"] = value.strip()
    if "timezone" in spec:
        try:
            hours_.zone(spec["timezone"])
        except ValueError as exc:
            raise bad(str(exc)) from None
        changes["timezone"] = spec["timezone"]
    if "closed_message" in spec:
        changes["closed_message"] = _text(
            spec["closed_message"], "closed_message", MESSAGE_MAX, multiline=True
        )
    if "max_queue" in spec:
        value = spec["max_queue"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUEUE:
            raise bad(f"max_queue must be an integer in 1..{MAX_QUEUE}")
        changes["max_queue"] = value
    if "assign" in spec:
        if spec["assign"] not in ASSIGN:
            raise bad("assign must be auto or manual")
        changes["assign"] = spec["assign"]
    if current is not None:
        return replace(current, **changes)
    changes.setdefault("title", name)
    changes.setdefault("max_queue", default_max_queue)
    return DeskDef(name=name, **changes)
