"""Working hours of a desk: the spec, open or closed at a given time, the next opening."""

from __future__ import annotations

import datetime as dt

import pytest

from commhub.desks import hours
from commhub.desks.model import DeskError, validate

SEOUL = hours.zone("Asia/Seoul")


def at(text: str, tz: dt.tzinfo = SEOUL) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_open_and_next_opening_in_the_desks_time_zone() -> None:
    spans = hours.parse("mon-fri 09:00-18:00; sat 10:00-13:00")
    # 2026-12-07 is a Monday
    assert hours.is_open(spans, SEOUL, at("2026-12-07T09:00"))
    assert not hours.is_open(spans, SEOUL, at("2026-12-07T18:00"))  # the end is excluded
    assert hours.next_opening(spans, SEOUL, at("2026-12-07T18:00")) == at("2026-12-08T09:00")
    assert hours.next_opening(spans, SEOUL, at("2026-12-11T20:00")) == at("2026-12-12T10:00")
    assert hours.next_opening(spans, SEOUL, at("2026-12-12T13:30")) == at("2026-12-14T09:00")
    # the same instant is another local time elsewhere
    utc = hours.zone("UTC")
    assert not hours.is_open(spans, utc, at("2026-12-07T09:00"))


def test_wrapping_day_ranges_lists_and_midnight() -> None:
    spans = hours.parse("fri-mon 00:00-24:00; wed,tue 12:00-12:30")
    assert {d for s in spans for d in s.days} == {4, 5, 6, 0, 2, 1}
    assert hours.is_open(spans, SEOUL, at("2026-12-13T23:59"))  # Sunday
    assert hours.is_open(spans, SEOUL, at("2026-12-08T12:00"))  # Tuesday
    assert not hours.is_open(spans, SEOUL, at("2026-12-10T12:00"))  # Thursday


def test_daylight_saving_time_is_the_zones() -> None:
    berlin = hours.zone("Europe/Berlin")
    spans = hours.parse("sun 09:00-10:00")
    # 2027-03-28: clocks go forward at 02:00; 09:00 local is 07:00 UTC that day
    opens = hours.next_opening(spans, berlin, at("2027-03-27T12:00", berlin))
    assert opens == dt.datetime(2027, 3, 28, 7, 0, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "1..400"),
        ("mon 9:00-18:00", "example"),
        ("someday 09:00-18:00", "invalid days"),
        ("mon 09:00-25:00", "invalid time"),
        ("mon 24:00-24:00", "invalid time"),
        ("mon 09:60-10:00", "invalid time"),
        ("mon 10:00-09:00", "after the start"),
        ("; ".join(["mon 09:00-10:00"] * 21), "spans"),
        ("x" * 401, "1..400"),
    ],
)
def test_bad_hours_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        hours.parse(spec)
    with pytest.raises(DeskError) as info:
        validate({"name": "d", "hours": spec or "  "})
    assert info.value.code == "invalid_request"


def test_a_desk_without_hours_is_always_open() -> None:
    d = validate({"name": "always"})
    assert d.is_open() and d.opens_at() is None and d.title == "always"
