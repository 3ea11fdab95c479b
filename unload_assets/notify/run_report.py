"""What a finished run did, read from the instance, and the Slack message that says it.

`read_run` reads the run's deliveries (materialisations), the targets it planned and the targets its
rename step reported as not delivered; `message_for` turns that into one message (messages.py renders
it), with the run's history: a retry by Dagster ("after 1 retry"), a re-execution of a failed run.
`catch_up_message` is the one message for a backlog after a long outage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg

from unload_assets.delivery import FAILED_TARGETS, Delivery, plain
from unload_assets.notify import messages
from unload_assets.notify.tick import RETRY_NUMBER_TAG

_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.RUN_FAILURE,
}
HISTORY_LOOKUPS = 20  # previous-delivery queries per failure message; further targets are listed without


@dataclass
class RunOutcome:
    deliveries: list[Delivery] = field(default_factory=list)
    failures: dict[str, messages.StepFailure] = field(default_factory=dict)
    rename_failed: set[str] = field(default_factory=set)  # targets whose rename stopped part-way
    planned: dict[dg.AssetKey, str | None] = field(default_factory=dict)  # key -> partition


# Which target an asset key is, for one instance (None: not one of its targets).
TargetOf = Callable[[dg.AssetKey | None], str | None]


def read_run(instance: dg.DagsterInstance, run_id: str, target_of: TargetOf) -> RunOutcome:
    """What run `run_id` did with the targets `target_of` recognises."""
    reading = RunOutcome()
    for event_record in instance.get_records_for_run(run_id, of_type=_EVENTS).records:
        entry, event = event_record.event_log_entry, event_record.event_log_entry.dagster_event
        if event is None:
            continue
        key = event.asset_key
        target = target_of(key)
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and target is not None:
            mat = event.step_materialization_data.materialization
            meta: dict[str, Any] = plain(mat.metadata)
            meta.setdefault("partition", mat.partition)
            reading.deliveries.append(Delivery.from_metadata(meta, target=target))
        elif (
            event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            and key is not None
            and target is not None
        ):
            reading.planned[key] = getattr(event.event_specific_data, "partition", None)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_key:
            data = event.step_failure_data
            per_target = _failed_targets(data.user_failure_data)
            for target, failed in per_target.items():  # the rename step names each target not delivered
                stage, said = str(failed.get("stage", "")), messages.short_error(str(failed.get("error", "")))
                reading.failures[target] = messages.StepFailure(f"{target} ({stage})", said)
                if stage == "rename":
                    reading.rename_failed.add(target)
            if not per_target:
                described = data.user_failure_data.description if data.user_failure_data else None
                short = _short(data.error, described)
                reading.failures[event.step_key] = messages.StepFailure(event.step_key, short)
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE and not reading.failures:
            error = getattr(event.event_specific_data, "error", None)
            short = _short(error, None if error else entry.message)
            reading.failures["(run)"] = messages.StepFailure("(run)", short)
    return reading


def _failed_targets(user_failure: Any) -> dict[str, dict[str, Any]]:
    """{target: {stage, error}} from the rename step's Failure metadata (assets.FAILED_TARGETS)."""
    found = getattr(getattr(user_failure, "metadata", None) or {}, "get", lambda _: None)(FAILED_TARGETS)
    value = getattr(found, "value", None)
    return {str(k): v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}


class _ErrorInfo(Protocol):
    """What Dagster records of an error (its SerializableErrorInfo, which it does not export)."""

    @property
    def message(self) -> str: ...
    @property
    def cls_name(self) -> str | None: ...
    @property
    def cause(self) -> _ErrorInfo | None: ...


def _short(error: _ErrorInfo | None, description: str | None) -> str:
    # Dagster wraps user errors (step execution, retry exhaustion); the user's own error says what went wrong.
    while (
        error is not None
        and error.cause is not None
        and ((error.cls_name or "").startswith("Dagster") or error.cls_name == "RetryRequestedFromPolicy")
    ):
        error = error.cause
    return messages.short_error(error.message if error else "", description)


def message_for(
    instance: dg.DagsterInstance,
    record: dg.RunRecord,
    reading: RunOutcome,
    secrets: tuple[str, ...],
    run_link: Callable[[str], str],
) -> messages.SlackMessage:
    run = record.dagster_run
    tags = run.tags
    first, last = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    facts = messages.RunFacts(
        run_id=run.run_id,
        job_name=job_label(run.job_name),
        link=run_link(run.run_id),
        trigger=trigger(tags),
        partition=tags.get("dagster/partition") or (f"{first}…{last}" if first and last else None),
        started=record.start_time,
        ended=record.end_time,
        after=_after(instance, run),
    )
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return messages.success_message(facts, reading.deliveries, secrets)
    delivered = {d.target for d in reading.deliveries}
    untouched = [
        _untouched(instance, key, part or facts.partition, reading, lookup=i < HISTORY_LOOKUPS)
        for i, (key, part) in enumerate(k for k in reading.planned.items() if k[0].path[-1] not in delivered)
    ]
    failures = list(reading.failures.values())
    canceled = run.status == dg.DagsterRunStatus.CANCELED
    return messages.failure_message(
        facts, failures, untouched, reading.deliveries, secrets, canceled=canceled
    )


def _untouched(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    partition: str | None,
    reading: RunOutcome,
    *,
    lookup: bool,
) -> messages.Untouched:
    target = key.path[-1]
    rename_failed = target in reading.rename_failed
    previous = None
    if lookup:
        partitions = [partition] if partition and "…" not in partition else None
        records_filter = dg.AssetRecordsFilter(key, asset_partitions=partitions)
        found = instance.fetch_materializations(records_filter, limit=1).records
        previous = found[0] if found else None
    mat = previous.asset_materialization if previous else None
    uri = Delivery.from_metadata(mat.metadata).uri if mat else None
    when = previous.timestamp if previous else None
    return messages.Untouched(target, partition, uri or None, when, rename_failed)


def job_label(job_name: str) -> str:
    """The run's job as a person knows it: Dagster names the job behind the asset page's Materialize
    button `__ASSET_JOB` (a run of a selection of assets, not of one of our jobs)."""
    return "materialised from the asset page" if job_name.startswith("__ASSET_JOB") else job_name


def trigger(tags: dict[str, str] | Any) -> str:
    for tag, label in (
        ("dagster/backfill", "backfill"),
        ("dagster/schedule_name", "schedule"),
        ("dagster/sensor_name", "sensor"),
        ("dagster/parent_run_id", "re-execution of"),
    ):
        if tags.get(tag):
            return f"{label} {tags[tag][:8] if tag.endswith('_id') else tags[tag]}"
    return "launched by hand"


def _after(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """The run's history worth telling: Dagster retried it, or it re-executes a run that failed."""
    retries = run.tags.get(RETRY_NUMBER_TAG)
    if retries and retries.isdigit() and int(retries) > 0:
        return f"after {retries} {'retry' if retries == '1' else 'retries'}"
    if run.parent_run_id:
        parent = instance.get_run_by_id(run.parent_run_id)
        if parent is not None and parent.status == dg.DagsterRunStatus.FAILURE:
            return f"after run {parent.run_id[:8]} failed"
    return None


def catch_up_message(
    instance: dg.DagsterInstance,
    runs: list[tuple[dg.RunRecord, RunOutcome]],
    secrets: tuple[str, ...],
    run_link: Callable[[str], str],
) -> messages.SlackMessage:
    """One message for a backlog of finished runs (after a long outage): a line per run."""
    lines = []
    for record, reading in runs:
        run = record.dagster_run
        partition = run.tags.get("dagster/partition")
        delivered = sorted({d.target for d in reading.deliveries})
        failed = sorted(reading.failures)
        what = f"{len(delivered)} delivered" + (f", not delivered: {', '.join(failed)}" if failed else "")
        after = _after(instance, run)
        lines.append(
            messages.BacklogLine(
                run_id=run.run_id,
                job_name=job_label(run.job_name),
                status=run.status.value,
                partition=partition,
                what=what + (f" ({after})" if after else ""),
                link=run_link(run.run_id),
                ended=record.end_time,
            )
        )
    return messages.backlog_message(lines, secrets)
