"""What a backfill did, read from the instance, and its one Slack message.

A backfill's runs carry Dagster's tag `dagster/backfill`; a run Dagster retries while the backfill is
in progress passes the tag on to its retry (a retry launched later is found through
`dagster/auto_retry_run_id`). The run sensors announce no run of a backfill on its own: once the
backfill is over (every run finished, every retry Dagster promised launched and finished) they post one
message for all of it: the days each target was delivered, every (target, day) not delivered by name,
and a link to the backfill's page, where "re-execute" runs just the days not delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import dagster as dg

from unload_assets.delivery import Delivery
from unload_assets.notify import messages
from unload_assets.notify.run_report import RunOutcome, TargetOf, read_run
from unload_assets.notify.tick import AUTO_RETRY_RUN_TAG, WILL_RETRY_TAG

BACKFILL_TAG = "dagster/backfill"  # Dagster's: the id of the backfill that launched the run
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
MARKER_PREFIX = "backfill/"  # the id a backfill's message carries in its Slack metadata
_FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
# The statuses of a backfill Dagster still works on (BulkActionStatus, not exported: by value).
_GOING_ON = ("REQUESTED", "CANCELING", "FAILING")


@dataclass
class BackfillOutcome:
    """A finished backfill: its runs (retries included), what each did, and what it came to."""

    backfill_id: str
    runs: list[dg.RunRecord]
    readings: dict[str, RunOutcome] = field(default_factory=dict)  # run id -> what it did
    delivered: list[Delivery] = field(default_factory=list)  # the latest delivery of each (target, day)
    failed: list[messages.DayFailed] = field(default_factory=list)

    @property
    def marker(self) -> str:
        return MARKER_PREFIX + self.backfill_id

    @property
    def any_run_failed(self) -> bool:
        """Whose news it is: the failure sensor's when a run of it failed or was cancelled (even if a
        retry delivered the day after), else the success sensor's. Both sensors decide alike."""
        return any(r.dagster_run.status in _FAILED for r in self.runs)

    def facts(self, link: str) -> messages.BackfillFacts:
        starts = [r.start_time for r in self.runs if r.start_time]
        ends = [r.end_time for r in self.runs if r.end_time]
        canceled = any(r.dagster_run.status == dg.DagsterRunStatus.CANCELED for r in self.runs)
        return messages.BackfillFacts(
            backfill_id=self.backfill_id,
            link=link,
            runs=len(self.runs),
            started=min(starts) if starts else None,
            ended=max(ends) if ends else None,
            canceled=canceled,
        )


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.RunRecord]:
    """Every run of the backfill, and the retries Dagster launched of them (tagged or not), oldest first."""
    records = {
        r.dagster_run.run_id: r
        for r in instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    }
    todo = [r.dagster_run.tags.get(AUTO_RETRY_RUN_TAG) for r in records.values()]
    while todo:
        retry_id = todo.pop()
        if not retry_id or retry_id in records:
            continue
        found = instance.get_run_records(dg.RunsFilter(run_ids=[retry_id]))
        for record in found:
            records[retry_id] = record
            todo.append(record.dagster_run.tags.get(AUTO_RETRY_RUN_TAG))
    return sorted(records.values(), key=lambda r: r.create_timestamp)


def runs_settled(
    runs: list[dg.RunRecord],
    now: float,
    retry_wait: timedelta,
    *,
    decision_wait: timedelta | None = None,
) -> bool:
    """Every run finished, and no failed one waits for a retry Dagster promised (and has not launched,
    for less than `retry_wait`), or, with `decision_wait` (run retries on), for Dagster to say whether it
    retries it (it tags the run a moment after the failure)."""
    for record in runs:
        run = record.dagster_run
        if not run.is_finished:
            return False
        if run.status != dg.DagsterRunStatus.FAILURE:
            continue
        promised = run.tags.get(WILL_RETRY_TAG) == "true" and not run.tags.get(AUTO_RETRY_RUN_TAG)
        ended = record.end_time or record.update_timestamp.timestamp()
        if promised and ended > now - retry_wait.total_seconds():
            return False
        deciding = decision_wait is not None and WILL_RETRY_TAG not in run.tags
        if deciding and ended > now - decision_wait.total_seconds():  # type: ignore[union-attr]
            return False
    return True


def backfill_over(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    """Whether Dagster is done with the backfill: it launches no more runs for it.

    The one read of Dagster's own backfill record, and not public API: Dagster documents no reader of a
    backfill's status (`DagsterInstance.get_backfill` is undocumented, its `BulkActionStatus` not
    exported: compared by value). From the runs
    alone a backfill between two batches of launches looks finished. A backfill that no longer exists
    (deleted) launches nothing more."""
    backfill = instance.get_backfill(backfill_id)
    return backfill is None or backfill.status.value not in _GOING_ON


def read_backfill(
    instance: dg.DagsterInstance, backfill_id: str, runs: list[dg.RunRecord], target_of: TargetOf
) -> BackfillOutcome:
    """What the backfill's runs delivered, and every (target, day) a run planned and none delivered."""
    outcome = BackfillOutcome(backfill_id, runs)
    latest: dict[tuple[str, str], Delivery] = {}
    for record in runs:
        reading = read_run(instance, record.dagster_run.run_id, target_of)
        outcome.readings[record.dagster_run.run_id] = reading
        for delivery in reading.deliveries:
            latest[(delivery.target, delivery.partition)] = delivery
    failed: dict[tuple[str, str], messages.DayFailed] = {}
    for record in runs:
        run = record.dagster_run
        if run.status not in _FAILED:
            continue
        reading = outcome.readings[run.run_id]
        planned = sorted({t for key in reading.planned if (t := target_of(key))})
        for day in run_days(run):
            for target in planned:
                if (target, day) in latest:
                    continue
                said = reading.failures.get(f"{target} {day}") or reading.failures.get(target)
                if said is None and reading.failures:  # the step or the run failed as a whole
                    said = next(iter(reading.failures.values()))
                stage = (
                    said.step_key.rpartition("(")[2].rstrip(")") if said and "(" in said.step_key else "run"
                )
                error = said.error if said else run.status.value.lower()
                failed[(target, day)] = messages.DayFailed(target, day, stage, error)
    outcome.delivered = [latest[key] for key in sorted(latest)]
    outcome.failed = [failed[key] for key in sorted(failed)]
    return outcome


def run_days(run: dg.DagsterRun) -> list[str]:
    """The days a run of daily targets served: its partition, or its range of partitions."""
    if partition := run.tags.get(PARTITION_TAG):
        return [partition]
    first, last = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
    if not first or not last:
        return []
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def backfill_message(
    outcome: BackfillOutcome, secrets: tuple[str, ...], link: Callable[[str], str]
) -> messages.SlackMessage:
    return messages.backfill_message(
        outcome.facts(link(outcome.backfill_id)), outcome.delivered, outcome.failed, secrets
    )
