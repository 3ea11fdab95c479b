"""Slack notices for finished unload runs: exactly once.

Not a run-status sensor: those set their cursor on the first tick (skipping what finished before),
move it on even when posting failed, and never see in-process runs. Each tick instead asks the
instance for runs that finished in the last 24 hours, skips those tagged as announced, posts the rest
oldest first and tags each right after Slack accepts it. State lives on the runs (tags) and in the
sensor cursor; nothing in a side file.

Exactly once: before a post the run is tagged as attempted, and each message carries the run's id in
its Slack metadata. A run attempted before but never tagged as announced (a crash between Slack's
answer and the tag write, an answer lost to a reset or a timeout, a 5xx after Slack acted) is first
looked up in the channel's recent history; found, it is tagged with that message and not posted
again. Only where the bot may not read the history (no `channels:history` scope) is such a run posted
again, and the tick says so: a duplicate is harmless, a missing "delivered" leaves people waiting.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import dagster as dg

from . import notify
from .assets import FAILED_TARGETS
from .naming import is_unload
from .resources.slack import NotDelivered, UnloadSlackResource

ANNOUNCED_TAG = "unload_assets/slack_announced"  # value: the Slack message ts (proof, and where to look)
# Re-executions copy their parent's tags: this one names the run the announcement was for.
ANNOUNCED_RUN_TAG = "unload_assets/slack_announced_run"
CHANNEL_TAG = "unload_assets/slack_channel"
ATTEMPT_TAG = "unload_assets/slack_attempt"  # "<run id>@<unix time>" of the first post attempted
LOOKBACK = timedelta(hours=24)
TICK_BUDGET_SECONDS = 15.0  # well inside Dagster's 60 s sensor timeout; the rest waits for the next tick
HISTORY_LOOKUPS = 20  # previous-delivery queries per failure message; further targets are listed without
SECRET_ENV_VARS = (
    "SLACK_BOT_TOKEN",
    "REDSHIFT_PASSWORD",
    "UNLOAD_ACCESS_KEY_ID",
    "UNLOAD_SECRET_ACCESS_KEY",
    "UNLOAD_SESSION_TOKEN",
)
Ev = dg.DagsterEventType
RunRecord = dg.RunRecord
_EVENTS = {Ev.ASSET_MATERIALIZATION_PLANNED, Ev.ASSET_MATERIALIZATION, Ev.STEP_FAILURE, Ev.RUN_FAILURE}


def _now() -> float:
    return time.time()  # a seam for tests: Retry-After deferrals without sleeping


@dataclass
class Cursor:
    """`untagged`: runs Slack accepted whose tag write failed (announced: retag, never re-post).
    `not_before`: a long Retry-After from Slack, honoured across ticks instead of hammering it."""

    untagged: dict[str, str] = field(default_factory=dict)
    not_before: float = 0.0

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        try:
            data = json.loads(raw or "{}")
            return cls(untagged=dict(data.get("untagged", {})), not_before=float(data.get("not_before", 0)))
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor only loses the retag list; the run tags still hold

    def dump(self) -> str:
        return json.dumps({"untagged": self.untagged, "not_before": self.not_before}, sort_keys=True)


@dataclass
class _Reading:
    deliveries: list[notify.Delivery] = field(default_factory=list)
    failures: dict[str, notify.StepFailure] = field(default_factory=dict)
    rename_failed: set[str] = field(default_factory=set)  # targets whose rename stopped part-way
    planned: dict[dg.AssetKey, str | None] = field(default_factory=dict)  # key -> partition


DEFAULT_INTERVAL_SECONDS = 30


def build_notification_sensors(interval_seconds: int = DEFAULT_INTERVAL_SECONDS) -> list[dg.SensorDefinition]:
    """The two Slack sensors; each looks for finished runs every `interval_seconds` at most."""
    return [
        _sensor("unload_success_to_slack", dg.DagsterRunStatus.SUCCESS, interval_seconds),
        _sensor("unload_failure_to_slack", dg.DagsterRunStatus.FAILURE, interval_seconds),
    ]


def _sensor(name: str, status: dg.DagsterRunStatus, interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"One Slack message per {status.value.lower()} unload run, retried until sent.",
    )
    def _evaluate(context: dg.SensorEvaluationContext, slack: UnloadSlackResource) -> dg.SensorResult:
        return announce(context, slack, status)

    return _evaluate


def announce(
    context: dg.SensorEvaluationContext, slack: UnloadSlackResource, status: dg.DagsterRunStatus
) -> dg.SensorResult:
    cursor, instance, now = Cursor.parse(context.cursor), context.instance, _now()
    _retag(instance, cursor, now)
    pending = _pending(instance, status, cursor, now)
    waiting = f"{len(pending)} {status.value.lower()} unload run(s) waiting (kept for 24 h)"
    problem = slack.misconfiguration()
    if problem or cursor.not_before > now or not pending:
        until = datetime.fromtimestamp(cursor.not_before, timezone.utc).strftime("%H:%M:%S UTC")
        reason = f"Slack asked us to wait until {until}" if cursor.not_before > now else problem
        return dg.SensorResult(
            skip_reason=f"{reason}; {waiting}." if reason else "Nothing to announce.", cursor=cursor.dump()
        )
    secrets = _secrets(slack)
    sent, refused, stop = [], [], None
    try:
        found, unread = _already_posted(slack, pending), None
    except NotDelivered as exc:
        if exc.retry_after is not None:
            cursor.not_before = _now() + exc.retry_after
        if not exc.cannot_read:  # Slack cannot say now: ask again next tick rather than guess
            summary = f"Announced 0 of {len(pending)} run(s); stopped: {exc.reason}; retried next tick."
            return dg.SensorResult(skip_reason=notify.scrub(summary, secrets), cursor=cursor.dump())
        found, unread = {}, exc.reason
    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    for record, reading in pending:
        run_id = record.dagster_run.run_id
        if run_id in found:  # posted by an earlier attempt whose answer never came: tag it, never re-post
            channel_id, ts = found[run_id]
        elif time.monotonic() > deadline:
            stop = "time budget of this tick used up"
            break
        else:
            message = _message(instance, record, reading, secrets)
            try:
                if _attempt(record.dagster_run) is None:
                    instance.add_run_tags(run_id, {ATTEMPT_TAG: f"{run_id}@{_now():.3f}"})
                channel_id, ts = slack.post(message.text, message.blocks, run_id=run_id)
            except NotDelivered as exc:
                if exc.retry_after is not None:
                    cursor.not_before = _now() + exc.retry_after
                if exc.only_this_message:  # don't let one malformed message hold back the others
                    refused.append(f"{run_id[:8]}: {exc.reason}")
                    continue
                stop = exc.reason + (
                    "; looked up in the channel before any new post" if exc.maybe_posted else ""
                )
                break
            except Exception as exc:  # the attempt tag could not be written: post nothing unrecorded
                stop = f"could not tag run {run_id[:8]} before posting ({type(exc).__name__})"
                break
            sent.append(run_id)
        try:  # a crash before this write is what the attempt tag and the history lookup cover
            instance.add_run_tags(
                run_id, {ANNOUNCED_TAG: ts, ANNOUNCED_RUN_TAG: run_id, CHANNEL_TAG: channel_id}
            )
        except Exception as exc:  # Slack has it: remember in the cursor so it is never re-posted
            cursor.untagged[run_id] = ts
            stop = f"could not tag run {run_id[:8]} as announced ({type(exc).__name__}); will retry the tag"
            break
        context.log.info(f"Announced run {run_id} in {slack.channel} (message ts {ts}).")
    summary = f"Announced {len(sent) + len(found)} of {len(pending)} run(s)"
    summary += f" ({', '.join(r[:8] for r in sent)})" if sent else ""
    summary += f"; {len(found)} found already in the channel, not posted again" if found else ""
    summary += f"; stopped: {stop}; the rest is retried next tick" if stop else ""
    summary += f"; Slack refused: {'; '.join(refused)}" if refused else ""
    if unread:
        summary += f"; could not look for earlier attempts ({unread}): posted again, a duplicate is possible"
    return dg.SensorResult(skip_reason=notify.scrub(summary + ".", secrets), cursor=cursor.dump())


def _attempt(run: dg.DagsterRun) -> float | None:
    """When a post of this run was first attempted (the tag a re-execution inherits is its parent's)."""
    owner, _, when = run.tags.get(ATTEMPT_TAG, "").partition("@")
    try:
        return float(when) if owner == run.run_id else None
    except ValueError:
        return None


def _already_posted(
    slack: UnloadSlackResource, pending: list[tuple[RunRecord, _Reading]]
) -> dict[str, tuple[str, str]]:
    """The pending runs an earlier attempt may have posted, looked up in the channel (one history read
    for all of them, from a minute before the earliest attempt)."""
    attempted = {r.dagster_run.run_id: when for r, _ in pending if (when := _attempt(r.dagster_run))}
    if not attempted:
        return {}
    return slack.find_posted(set(attempted), oldest=min(attempted.values()) - 60)


def _pending(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, cursor: Cursor, now: float
) -> list[tuple[RunRecord, _Reading]]:
    since = now - LOOKBACK.total_seconds()
    # updated_after narrows the query; tag writes bump update_timestamp, so end_time decides the window.
    filters = dg.RunsFilter(statuses=[status], updated_after=datetime.fromtimestamp(since, timezone.utc))
    found = []
    for record in instance.get_run_records(filters):
        run = record.dagster_run
        ended = record.end_time or record.update_timestamp.timestamp()
        if _announced(run) or run.run_id in cursor.untagged or ended < since:
            continue
        reading = _read(instance, run.run_id)
        if reading.deliveries or (status == dg.DagsterRunStatus.FAILURE and reading.planned):
            found.append((ended, record, reading))
    return [(record, reading) for _, record, reading in sorted(found, key=lambda f: f[0])]


def _announced(run: dg.DagsterRun) -> bool:
    """Announced in its own right: a re-execution inherits its parent's announcement tags (the parent
    failed and was announced; the re-execution's outcome is news). Tags written before the run tag
    existed count for runs that are no re-execution."""
    if ANNOUNCED_TAG not in run.tags:
        return False
    owner = run.tags.get(ANNOUNCED_RUN_TAG)
    return owner == run.run_id if owner else run.parent_run_id is None


def _read(instance: dg.DagsterInstance, run_id: str) -> _Reading:
    reading = _Reading()
    for event_record in instance.get_records_for_run(run_id, of_type=_EVENTS).records:
        entry, event = event_record.event_log_entry, event_record.event_log_entry.dagster_event
        if event is None:
            continue
        key = event.asset_key
        if event.event_type == Ev.ASSET_MATERIALIZATION and is_unload(key):
            mat = event.step_materialization_data.materialization
            meta: dict[str, Any] = {k: v.value for k, v in mat.metadata.items()}
            meta.setdefault("partition", mat.partition)
            reading.deliveries.append(notify.delivery_from_metadata(key.path[-1], meta))  # type: ignore[union-attr]
        elif event.event_type == Ev.ASSET_MATERIALIZATION_PLANNED and key is not None and is_unload(key):
            reading.planned[key] = getattr(event.event_specific_data, "partition", None)
        elif event.event_type == Ev.STEP_FAILURE and event.step_key:
            data = event.step_failure_data
            per_target = _failed_targets(data.user_failure_data)
            for target, failed in per_target.items():  # the rename step names each target not delivered
                stage, said = str(failed.get("stage", "")), notify.short_error(str(failed.get("error", "")))
                reading.failures[target] = notify.StepFailure(f"{target} ({stage})", said)
                if stage == "rename":
                    reading.rename_failed.add(target)
            if not per_target:
                described = data.user_failure_data.description if data.user_failure_data else None
                short = _short(data.error, described)
                reading.failures[event.step_key] = notify.StepFailure(event.step_key, short)
        elif event.event_type == Ev.RUN_FAILURE and not reading.failures:
            error = getattr(event.event_specific_data, "error", None)
            short = _short(error, None if error else entry.message)
            reading.failures["(run)"] = notify.StepFailure("(run)", short)
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
    return notify.short_error(error.message if error else "", description)


def _message(
    instance: dg.DagsterInstance, record: RunRecord, reading: _Reading, secrets: tuple[str, ...]
) -> notify.SlackMessage:
    run = record.dagster_run
    webserver = (os.getenv("DAGSTER_WEBSERVER_URL") or "http://localhost:3000").rstrip("/")
    tags = run.tags
    first, last = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    facts = notify.RunFacts(
        run_id=run.run_id,
        job_name=run.job_name,
        link=f"{webserver}/runs/{run.run_id}",
        trigger=_trigger(tags),
        partition=tags.get("dagster/partition") or (f"{first}…{last}" if first and last else None),
        started=record.start_time,
        ended=record.end_time,
    )
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return notify.success_message(facts, reading.deliveries, secrets)
    delivered = {d.target for d in reading.deliveries}
    untouched = [
        _untouched(instance, key, part or facts.partition, reading, lookup=i < HISTORY_LOOKUPS)
        for i, (key, part) in enumerate(k for k in reading.planned.items() if k[0].path[-1] not in delivered)
    ]
    failures = list(reading.failures.values())
    return notify.failure_message(facts, failures, untouched, reading.deliveries, secrets)


def _untouched(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None, reading: _Reading, *, lookup: bool
) -> notify.Untouched:
    target = key.path[-1]
    rename_failed = target in reading.rename_failed
    previous = None
    if lookup:
        partitions = [partition] if partition and "…" not in partition else None
        records_filter = dg.AssetRecordsFilter(key, asset_partitions=partitions)
        found = instance.fetch_materializations(records_filter, limit=1).records
        previous = found[0] if found else None
    mat = previous.asset_materialization if previous else None
    uri = mat.metadata.get("s3_uri") if mat else None
    when = previous.timestamp if previous else None
    return notify.Untouched(target, partition, getattr(uri, "value", None), when, rename_failed)


def _retag(instance: dg.DagsterInstance, cursor: Cursor, now: float) -> None:
    for run_id, ts in list(cursor.untagged.items()):
        try:
            instance.add_run_tags(run_id, {ANNOUNCED_TAG: ts, ANNOUNCED_RUN_TAG: run_id})
            del cursor.untagged[run_id]
        except Exception:
            if float(ts or 0) < now - 2 * LOOKBACK.total_seconds():
                del cursor.untagged[run_id]  # long out of the lookback (or deleted): nothing left to protect


def _secrets(slack: UnloadSlackResource) -> tuple[str, ...]:
    return tuple(v for v in (slack.token, *map(os.getenv, SECRET_ENV_VARS)) if v)


def _trigger(tags: dict[str, str] | Any) -> str:
    for tag, label in (
        ("dagster/backfill", "backfill"),
        ("dagster/schedule_name", "schedule"),
        ("dagster/sensor_name", "sensor"),
        ("dagster/parent_run_id", "re-execution of"),
    ):
        if tags.get(tag):
            return f"{label} {tags[tag][:8] if tag.endswith('_id') else tags[tag]}"
    return "launched by hand"
