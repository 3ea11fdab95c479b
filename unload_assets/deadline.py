"""Delivery deadlines (`deliver_by`): which target-day is due when. Pure: no I/O, no Dagster.

A deadline is a local time of UNLOAD_TIMEZONE on the day of the morning run (09:00), later than 09:00.
At the deadline of day T a daily target must hold its partition T-1 (the one the 09:00 run of day T
materialises); an unpartitioned target must have been delivered since 09:00 of day T. A local time a DST
change skips is read as the wall clock reads it an hour later (zoneinfo's fold=0); no zone changes its
clocks between 09:00 and midnight today.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# When the morning run starts (defs/schedules.py RUN_AT_CRON; a unit test keeps the two equal).
RUN_AT = time(9, 0)
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def deliver_by_problem(value: str) -> str | None:
    """What is wrong with a catalogue `deliver_by` ("HH:MM", after 09:00), or None."""
    match = _HH_MM.fullmatch(value)
    if not match:
        return f'must be a local time HH:MM (24-hour, e.g. "09:30"), not {value!r}'
    if time(int(match[1]), int(match[2])) <= RUN_AT:
        return (
            f"{value} is not after {RUN_AT:%H:%M}, when the morning run starts; a deadline is a time later "
            "the same day, in UNLOAD_TIMEZONE"
        )
    return None


def parse_deliver_by(value: str) -> time:
    if problem := deliver_by_problem(value):
        raise ValueError(problem)
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def freshness_window(deliver_by: time) -> tuple[str, timedelta]:
    """The deadline as Dagster's cron freshness policy wants it: the cron of the deadline and how long
    before it a materialisation counts (since the morning run started)."""
    day = date(2000, 1, 1)
    return (
        f"{deliver_by.minute} {deliver_by.hour} * * *",
        datetime.combine(day, deliver_by) - datetime.combine(day, RUN_AT),
    )


@dataclass(frozen=True)
class Watched:
    """A target with a deadline; `first_partition` is a daily target's start date."""

    target: str
    deliver_by: time
    daily: bool
    first_partition: date | None = None


@dataclass(frozen=True)
class TargetDay:
    """One target's delivery of one day: `day` is the partition a daily target must hold (the day
    before the run), or the date of the run for an unpartitioned target."""

    target: str
    day: str
    due: float  # the deadline, Unix time
    since: float  # 09:00 of the run's day, Unix time: an unpartitioned delivery counts from then
    daily: bool
    due_local: str  # "09:30 America/Los_Angeles", for people

    @property
    def key(self) -> str:
        return f"{self.target}/{self.day}"


def local_instant(day: date, at: time, timezone: str) -> datetime:
    return datetime.combine(day, at, tzinfo=ZoneInfo(timezone))


def target_day(watched: Watched, run_date: date, timezone: str) -> TargetDay | None:
    """The target-day the deadline of `run_date` (a local date) checks; None before a daily target's
    first partition (the schedule skips those days too)."""
    day = run_date - timedelta(days=1) if watched.daily else run_date
    if watched.first_partition is not None and day < watched.first_partition:
        return None
    due = local_instant(run_date, watched.deliver_by, timezone)
    return TargetDay(
        target=watched.target,
        day=day.isoformat(),
        due=due.timestamp(),
        since=local_instant(run_date, RUN_AT, timezone).timestamp(),
        daily=watched.daily,
        due_local=f"{watched.deliver_by:%H:%M} {timezone}",
    )


def run_date_of(due: float, timezone: str) -> date:
    """The local date of a deadline (Unix time)."""
    return datetime.fromtimestamp(due, ZoneInfo(timezone)).date()


def due_between(watched: Iterable[Watched], timezone: str, after: float, until: float) -> list[TargetDay]:
    """Every target-day whose deadline falls in (after, until], oldest deadline first."""
    zone = ZoneInfo(timezone)
    first = datetime.fromtimestamp(after, zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(until, zone).date()
    found = []
    for offset in range((last - first).days + 1):
        for target in watched:
            told = target_day(target, first + timedelta(days=offset), timezone)
            if told is not None and after < told.due <= until:
                found.append(told)
    return sorted(found, key=lambda t: (t.due, t.target))
