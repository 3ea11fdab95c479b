"""What the unload op hands to the rename op, and the day and run folder both ops read it by.

The handoff is pickled to S3 by the handoff IO manager (beside the staged files), so that a retry or a
re-execution from failure on another machine finds it. It carries what the unload op computed once (the
day, the final key, the staging folder), so the rename op re-derives nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg

from unload_assets.catalogue import UnloadTarget


@dataclass(frozen=True)
class StagedUnload:
    """One target's UNLOAD, staged: where its files and manifest are, and what it is for."""

    bucket: str
    staging_prefix: str  # key prefix of this attempt's staging folder, ending in '/'
    manifest_key: str
    lock_key: str  # the lock object the rename holds; under staging, unseen by readers of the final prefix
    day: date | None  # the partition's day (None: an unpartitioned target)
    final_key: str  # the target's key for that day, rendered once here
    rows: int
    query_id: int
    seconds: float
    redacted_statement: str

    @property
    def run_folder(self) -> str:
        """`<staging>/<target>/<partition>/<run_id>/`: every attempt's folder of this run."""
        return run_folder(self.staging_prefix)


@dataclass(frozen=True)
class UnloadFailed:
    """A target whose UNLOAD failed for good in run `run_id`: handed on so the rename op can say so."""

    run_id: str
    error: str


@dataclass(frozen=True)
class TargetDay:
    """One target and one day of a run: its own UNLOAD, rename, materialisation and checks.

    A run serves one day (the morning, a partition materialised from the UI) or, launched by a
    backfill, a range of days (the assets' BackfillPolicy). In a range every (target, day) is handed on,
    failed and named as `<target> <day>`; in a run of one day as `<target>`, as before ranges existed."""

    target: UnloadTarget
    day: date | None  # None: an unpartitioned target
    ranged: bool = False  # one of several days of the run

    @property
    def label(self) -> str:
        return f"{self.target.name} {self.day.isoformat()}" if self.ranged and self.day else self.target.name


def run_days(context: dg.OpExecutionContext) -> list[date]:
    """The days a partitioned run serves, in order: its partition, or its range of partitions."""
    if context.has_partition_key:
        return [date.fromisoformat(context.partition_key)]
    return [date.fromisoformat(key) for key in context.partition_keys]


def target_days(context: dg.OpExecutionContext, targets: Sequence[UnloadTarget]) -> list[TargetDay]:
    """Every (target, day) of the run for `targets` (the selected ones), by target then day."""
    days: list[date] | None = None
    found = []
    for target in targets:
        if target.partitioning.type != "daily":
            found.append(TargetDay(target, None))
            continue
        days = run_days(context) if days is None else days
        found += [TargetDay(target, day, ranged=len(days) > 1) for day in days]
    return found


def run_folder(attempt_prefix: str) -> str:
    """`<staging>/<target>/<partition>/<run_id>/` from an attempt's `.../<run_id>/attempt-N/`."""
    return attempt_prefix.rstrip("/").rsplit("/", 1)[0] + "/"
