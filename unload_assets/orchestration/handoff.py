"""What the unload op hands to the rename op, and the day and run folder both ops read it by.

The handoff is pickled to S3 by the handoff IO manager (beside the staged files), so that a retry or a
re-execution from failure on another machine finds it. It carries what the unload op computed once (the
day, the final key, the staging folder), so the rename op re-derives nothing.
"""

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


def partition_day(context: dg.OpExecutionContext, target: UnloadTarget) -> date | None:
    """The day a daily target's run is for (None for an unpartitioned target)."""
    return date.fromisoformat(context.partition_key) if target.partitioning.type == "daily" else None


def run_folder(attempt_prefix: str) -> str:
    """`<staging>/<target>/<partition>/<run_id>/` from an attempt's `.../<run_id>/attempt-N/`."""
    return attempt_prefix.rstrip("/").rsplit("/", 1)[0] + "/"
