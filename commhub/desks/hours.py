"""Working hours: "mon-fri 09:00-18:00; sat 10:00-13:00" in a time zone.

A desk is open when the local time falls in one of its spans; `opens_at` is the next start of
a span (what a closed or full desk tells a visitor)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(?P<days>[a-z,\-]+)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")
MAX_SPANS = 20
MAX_SPEC = 400


@dataclass(frozen=True)
class Span:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, > start (1440 = midnight at the end of the day)


def zone(name: str) -> ZoneInfo:
    """The IANA zone; ValueError for a name that is not one."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or ".." in name:
        raise ValueError("timezone must be an IANA name such as Asia/Seoul or UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as Asia/Seoul)") from None


def _minutes(text: str, *, end: bool) -> int:
    hours, minutes = int(text[:2]), int(text[3:])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ValueError(f"invalid time {text!r} (HH:MM, 24:00 only as a closing time)")
    return hours * 60 + minutes


def _days(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"invalid days {part!r} (mon..sun, ranges with '-', lists with ',')")
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


def parse(spec: str) -> tuple[Span, ...]:
    """The spans of a spec; ValueError says which part is wrong."""
    if not isinstance(spec, str) or not 0 < len(spec) <= MAX_SPEC:
        raise ValueError(f"hours must be 1..{MAX_SPEC} characters")
    parts = [p.strip().lower() for p in spec.split(";") if p.strip()]
    if not parts or len(parts) > MAX_SPANS:
        raise ValueError(f"hours must have 1..{MAX_SPANS} spans separated by ';'")
    spans = []
    for part in parts:
        m = _SPAN.match(re.sub(r"\s+", " ", part))
        if not m:
            raise ValueError(f"invalid hours {part!r} (example: mon-fri 09:00-18:00)")
        start = _minutes(m["start"], end=False)
        end = _minutes(m["end"], end=True)
        if end <= start:
            raise ValueError(f"invalid hours {part!r}: the end must be after the start")
        spans.append(Span(_days(m["days"]), start, end))
    return tuple(spans)


def is_open(spans: tuple[Span, ...], tz: ZoneInfo, now: float) -> bool:
    local = dt.datetime.fromtimestamp(now, tz)
    minute = local.hour * 60 + local.minute
    return any(local.weekday() in s.days and s.start <= minute < s.end for s in spans)


def next_opening(spans: tuple[Span, ...], tz: ZoneInfo, now: float) -> float | None:
    """Unix time of the next span start after now (within a week), or None."""
    today = dt.datetime.fromtimestamp(now, tz).date()
    best: float | None = None
    for offset in range(8):
        day = today + dt.timedelta(days=offset)
        for s in spans:
            if day.weekday() not in s.days:
                continue
            at = dt.datetime.combine(day, dt.time(s.start // 60, s.start % 60), tz).timestamp()
            if at > now and (best is None or at < best):
                best = at
        if best is not None:
            return best
    return best
