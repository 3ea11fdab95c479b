"""What the instance knows of one target-day: delivered (when, by which run, where), or why not yet.

Why, as far as known: the newest run that planned the target for that day (its materialisation was
planned when the run was created, so queued runs count) is queued, still running, failed (with the
target's own error when the rename step named it), canceled, or finished without it; or no run of that
day planned it at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import dagster as dg

from unload_assets.deadline import TargetDay
from unload_assets.delivery import Delivery
from unload_assets.names import Names
from unload_assets.notify import messages
from unload_assets.notify.run_report import RunOutcome, TargetOf, read_run
from unload_assets.notify.tick import WILL_RETRY_TAG

RUNS_LOOKED_AT = 50  # the newest runs of a day searched for the one that planned a target
_QUEUED = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING}
_REASONS = {
    dg.DagsterRunStatus.STARTED: messages.RUNNING,
    dg.DagsterRunStatus.FAILURE: messages.FAILED,
    dg.DagsterRunStatus.CANCELING: messages.CANCELED,
    dg.DagsterRunStatus.CANCELED: messages.CANCELED,
}


class DeliveryLookup:
    """One tick's reads of the instance: the runs of a day and what each planned are read once, however
    many targets share them."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        names: Names,
        target_of: TargetOf,
        run_link: Callable[[str], str],
    ) -> None:
        self.instance, self.names, self.target_of, self.run_link = instance, names, target_of, run_link
        self._runs: dict[tuple[bool, str], list[dg.RunRecord]] = {}
        self._planned: dict[str, set[dg.AssetKey]] = {}
        self._readings: dict[str, RunOutcome] = {}

    def landed(self, told: TargetDay) -> messages.Landed | None:
        """The target-day's delivery: its partition's latest materialisation (a daily target), or the
        latest since 09:00 of the run's day (unpartitioned); None while there is none."""
        key = self.names.asset_key(told.target)
        if told.daily:
            records_filter = dg.AssetRecordsFilter(key, asset_partitions=[told.day])
        else:
            records_filter = dg.AssetRecordsFilter(key, after_timestamp=told.since)
        found = self.instance.fetch_materializations(records_filter, limit=1).records
        if not found:
            return None
        record, mat = found[0], found[0].asset_materialization
        uri = Delivery.from_metadata(mat.metadata).uri if mat is not None else ""
        return messages.Landed(
            target=told.target,
            day=told.day,
            due=told.due_local,
            at=record.timestamp,
            late_by=record.timestamp - told.due,
            uri=uri or None,
            run_id=record.run_id or None,
            link=self.run_link(record.run_id) if record.run_id else None,
        )

    def why_late(self, told: TargetDay) -> messages.Late:
        key = self.names.asset_key(told.target)
        found = next((r for r in self._runs_of(told) if key in self._planned_by(r.dagster_run.run_id)), None)
        if found is None:
            return messages.Late(told.target, told.day, told.due_local, messages.NEVER_LAUNCHED)
        run = found.dagster_run
        reason = messages.QUEUED if run.status in _QUEUED else _REASONS.get(run.status, messages.WITHOUT_IT)
        since = found.create_timestamp.timestamp() if reason == messages.QUEUED else found.start_time
        detail = self._error(run.run_id, told.target) if reason == messages.FAILED else ""
        if reason == messages.FAILED and run.tags.get(WILL_RETRY_TAG) == "true":
            detail += (" — " if detail else "") + "Dagster will retry it"
        return messages.Late(
            told.target,
            told.day,
            told.due_local,
            reason,
            detail=detail,
            since=since if reason in (messages.QUEUED, messages.RUNNING) else None,
            run_id=run.run_id,
            link=self.run_link(run.run_id),
        )

    def _runs_of(self, told: TargetDay) -> list[dg.RunRecord]:
        """A daily target-day's runs are those of its partition; an unpartitioned one's, those created
        since 09:00 of its day. Newest first."""
        cache = (told.daily, told.day)
        if cache not in self._runs:
            if told.daily:
                runs_filter = dg.RunsFilter(tags={"dagster/partition": told.day})
            else:
                runs_filter = dg.RunsFilter(created_after=datetime.fromtimestamp(told.since, timezone.utc))
            self._runs[cache] = list(self.instance.get_run_records(runs_filter, limit=RUNS_LOOKED_AT))
        return self._runs[cache]

    def _planned_by(self, run_id: str) -> set[dg.AssetKey]:
        if run_id not in self._planned:
            planned = self.instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            ).records
            events = (r.event_log_entry.dagster_event for r in planned)
            self._planned[run_id] = {e.asset_key for e in events if e is not None and e.asset_key}
        return self._planned[run_id]

    def _error(self, run_id: str, target: str) -> str:
        """The target's own failure when the rename step named it, else the run's first one."""
        if run_id not in self._readings:
            self._readings[run_id] = read_run(self.instance, run_id, self.target_of)
        failures = self._readings[run_id].failures
        failure = failures.get(target) or next(iter(failures.values()), None)
        return f"{failure.step_key}: {failure.error}" if failure else ""
