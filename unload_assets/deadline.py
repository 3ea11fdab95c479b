"""Delivery deadlines (`deliver_by`): which target-day is due when. Pure: no I/O, no Dagster.

A deadline is a local time of the instance's time zone on the day of the morning run, later than the run
(09:00 unless the instance's `schedule.at` says otherwise). At the deadline of day T a daily target must
hold its partition T-1 (the one the morning run of day T materialises); an unpartitioned target must have
been delivered since the morning run of day T. A local time a DST
change skips is read as the wall clock reads it an hour later (zoneinfo's fold=0); no zone changes its
clocks between 09:00 and midnight today.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# When the morning run starts unless an instance says otherwise (the component's `schedule.at`).
RUN_AT = time(9, 0)
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def parse_time_of_day(value: str) -> time | None:
    """ "HH:MM" (24-hour) as a time, or None when it is not one."""
    match = _HH_MM.fullmatch(value)
    return time(int(match[1]), int(match[2])) if match else None


def deliver_by_problem(value: str, run_at: time = RUN_AT) -> str | None:
    """What is wrong with a catalogue `deliver_by` ("HH:MM", after the morning run at `run_at`), or None."""
    deadline = parse_time_of_day(value)
    if deadline is None:
        return f'must be a local time HH:MM (24-hour, e.g. "09:30"), not {value!r}'
    if deadline <= run_at:
        return (
            f"{value} is not after {run_at:%H:%M}, when the morning run starts; a deadline is a time later "
            "the same day, in the instance's time zone"
        )
    return None


def parse_deliver_by(value: str, run_at: time = RUN_AT) -> time:
    if problem := deliver_by_problem(value, run_at):
        raise ValueError(problem)
    deadline = parse_time_of_day(value)
    assert deadline is not None
    return deadline


def freshness_window(deliver_by: time, run_at: time = RUN_AT) -> tuple[str, timedelta]:
    """The deadline as Dagster's cron freshness policy wants it: the cron of the deadline and how long
    before it a materialisation counts (since the morning run started)."""
    day = date(2000, 1, 1)
    return (
        f"{deliver_by.minute} {deliver_by.hour} * * *",
        datetime.combine(day, deliver_by) - datetime.combine(day, run_at),
    )


@dataclass(frozen=True)
class Watched:
    """A target with a deadline; `first_partition` is a daily target's start date."""

    target: str
    deliver_by: time
    daily: bool
    first_partition: date | None = None
    run_at: time = RUN_AT  # when the morning run starts


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
        since=local_instant(run_date, watched.run_at, timezone).timestamp(),
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
