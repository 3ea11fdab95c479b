"""Slack notices for finished unload runs: exactly once, whatever the outage.

Not a run-status sensor: those set their cursor on the first tick (skipping what finished before),
move it on even when posting failed, and never see in-process runs. Each tick instead asks the
instance for runs that finished since a watermark kept in the sensor's cursor (where Dagster keeps
sensor state), skips those tagged as announced, posts the rest oldest first and tags each right after
Slack accepts it. The watermark only moves past runs that are announced, so a daemon down for a long
weekend finds every run when it comes back; more than CATCH_UP_THRESHOLD runs at once are told in one
summary message instead of a flood (never silence).

Exactly once: before a post the run is tagged as attempted, and each message carries the run's id in
its Slack metadata. A run attempted before but never tagged as announced (a crash between Slack's
answer and the tag write, an answer lost to a reset or a timeout, a 5xx after Slack acted) is first
looked up in the channel's recent history; found, it is tagged with that message and not posted
again. Only where the bot may not read the history (no `channels:history` scope) is such a run posted
again, and the tick says so: a duplicate is harmless, a missing "delivered" leaves people waiting.

Retried runs: a failed run that Dagster's run retries will retry (`dagster/will_retry`) is not
announced; its retry is, with its final outcome ("delivered after 1 retry"). A cancelled run is
announced by the failure sensor.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import dagster as dg

from unload_assets import environment
from unload_assets.orchestration.names import is_unload
from unload_assets.orchestration.run_report import Reading, read_run
from unload_assets.orchestration.schedules import DAILY_JOB, UNPARTITIONED_JOB
from unload_assets.orchestration.sensor_cursor import Cursor
from unload_assets.orchestration.slack_post import (
    ANNOUNCED_RUN_TAG,
    ANNOUNCED_TAG,
    ATTEMPT_TAG,
    CHANNEL_TAG,
    Posting,
    already_posted,
    retag,
)
from unload_assets.resources.slack import NotDelivered, UnloadSlackResource
from unload_assets.secrets import scrub

LOOKBACK = timedelta(hours=24)  # how far back the very first tick looks (no watermark yet)
MARGIN_SECONDS = 300.0  # the watermark trails the clock: a run's end is committed a moment after it ends
CATCH_UP_THRESHOLD = 10  # more runs than this waiting at once (an outage): one summary message
CATCH_UP_MAX = 50  # runs in one summary (their ids ride in its Slack metadata); more take more ticks
RETRY_WAIT = timedelta(hours=1)  # a retry Dagster said it would start, but has not: announce the failure
WILL_RETRY_TAG = "dagster/will_retry"  # Dagster's: "true" on a failed run its run retries will retry
AUTO_RETRY_RUN_TAG = "dagster/auto_retry_run_id"  # Dagster's: the retry run, once launched
TICK_BUDGET_SECONDS = 15.0  # well inside Dagster's 60 s sensor timeout; the rest waits for the next tick
__all__ = ["ANNOUNCED_RUN_TAG", "ANNOUNCED_TAG", "ATTEMPT_TAG", "CHANNEL_TAG", "Cursor", "announce"]
RunRecord = dg.RunRecord


def _now() -> float:
    return time.time()  # a seam for tests: Retry-After deferrals without sleeping


DEFAULT_INTERVAL_SECONDS = 30


def build_notification_sensors(interval_seconds: int = DEFAULT_INTERVAL_SECONDS) -> list[dg.SensorDefinition]:
    """The two Slack sensors; each looks for finished runs every `interval_seconds` at most."""
    return [
        _sensor("unload_success_to_slack", dg.DagsterRunStatus.SUCCESS, interval_seconds),
        _sensor("unload_failure_to_slack", dg.DagsterRunStatus.FAILURE, interval_seconds),  # and CANCELED
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
    retag(instance, cursor, now, keep_seconds=2 * LOOKBACK.total_seconds())
    pending, held = _pending(instance, status, cursor, now)
    waiting = f"{len(pending)} {status.value.lower()} unload run(s) waiting"
    problem = slack.misconfiguration()
    if problem or cursor.not_before > now or not pending:
        until = datetime.fromtimestamp(cursor.not_before, timezone.utc).strftime("%H:%M:%S UTC")
        reason = f"Slack asked us to wait until {until}" if cursor.not_before > now else problem
        _advance(cursor, [*_ends(pending), *held], now)
        skip = f"{reason}; {waiting}." if reason else "Nothing to announce."
        skip += f" {len(held)} failed run(s) wait for Dagster's retry." if held else ""
        return dg.SensorResult(skip_reason=skip, cursor=cursor.dump())
    secrets = environment.secret_values(slack.token)
    try:
        found, unread = already_posted(slack, pending), None
    except NotDelivered as exc:
        if exc.retry_after is not None:
            cursor.not_before = _now() + exc.retry_after
        if not exc.cannot_read:  # Slack cannot say now: ask again next tick rather than guess
            _advance(cursor, [*_ends(pending), *held], now)
            summary = f"Announced 0 of {len(pending)} run(s); stopped: {exc.reason}; retried next tick."
            return dg.SensorResult(skip_reason=scrub(summary, secrets), cursor=cursor.dump())
        found, unread = {}, exc.reason
    tick = Posting(
        instance, slack, cursor, secrets, found, clock=lambda: _now(), budget_seconds=TICK_BUDGET_SECONDS
    )
    rest = [(r, reading) for r, reading in pending if not tick.retag_found(r.dagster_run.run_id)]
    if tick.stop is None and len(rest) > CATCH_UP_THRESHOLD:
        tick.post_summary(rest[:CATCH_UP_MAX])
    elif tick.stop is None:
        tick.post_each(rest)
    left = [(r, reading) for r, reading in pending if r.dagster_run.run_id not in tick.done]
    _advance(cursor, [*_ends(left), *held], now)
    summary = f"Announced {len(tick.done)} of {len(pending)} run(s)"
    summary += f" ({', '.join(r[:8] for r in tick.sent)})" if tick.sent else ""
    summary += f"; {tick.summarized} in one catch-up message" if tick.summarized else ""
    summary += f"; {len(found)} found already in the channel, not posted again" if found else ""
    summary += f"; stopped: {tick.stop}; the rest is retried next tick" if tick.stop else ""
    summary += f"; Slack refused: {'; '.join(tick.refused)}" if tick.refused else ""
    summary += f"; {len(held)} failed run(s) wait for Dagster's retry" if held else ""
    if unread:
        summary += f"; could not look for earlier attempts ({unread}): posted again, a duplicate is possible"
    return dg.SensorResult(skip_reason=scrub(summary + ".", secrets), cursor=cursor.dump())


def _ends(runs: list[tuple[RunRecord, Reading]]) -> list[float]:
    return [_ended(record) for record, _ in runs]


def _ended(record: RunRecord) -> float:
    return record.end_time or record.update_timestamp.timestamp()


def _advance(cursor: Cursor, unannounced_ends: list[float], now: float) -> None:
    """The watermark: up to the oldest run still to announce, else shortly before now."""
    cursor.since = min([*unannounced_ends, now - MARGIN_SECONDS])


def _statuses(status: dg.DagsterRunStatus) -> list[dg.DagsterRunStatus]:
    """The failure sensor tells of cancelled runs too: they did not deliver either."""
    if status == dg.DagsterRunStatus.FAILURE:
        return [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    return [status]


def _pending(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, cursor: Cursor, now: float
) -> tuple[list[tuple[RunRecord, Reading]], list[float]]:
    """Runs to announce, oldest first; and the end times of failed runs held back for Dagster's retry."""
    since = cursor.since if cursor.since is not None else now - LOOKBACK.total_seconds()
    # updated_after narrows the query; tag writes bump update_timestamp, so end_time decides the window.
    filters = dg.RunsFilter(
        statuses=_statuses(status), updated_after=datetime.fromtimestamp(since, timezone.utc)
    )
    found, held = [], []
    for record in instance.get_run_records(filters):
        run, ended = record.dagster_run, _ended(record)
        if _announced(run) or run.run_id in cursor.untagged or ended < since:
            continue
        if run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true":
            if _superseded_by_retry(instance, run):
                continue  # its retry is announced, with the final outcome
            if ended > now - RETRY_WAIT.total_seconds():
                held.append(ended)
                continue  # the retry is about to start
        reading = read_run(instance, run.run_id)
        if reading.deliveries or (status == dg.DagsterRunStatus.FAILURE and reading.planned):
            found.append((ended, record, reading))
        elif status == dg.DagsterRunStatus.FAILURE and run.status == dg.DagsterRunStatus.CANCELED:
            found.append((ended, record, reading))  # cancelled before anything was planned: say so too
        elif status == dg.DagsterRunStatus.FAILURE and _runs_unloads(run):
            # Failed before its plan was recorded: a daemon killed while it created or launched the run
            # leaves it NOT_STARTED or STARTING, and run monitoring fails it once the start times out.
            found.append((ended, record, reading))
    return [(record, reading) for _, record, reading in sorted(found, key=lambda f: f[0])], held


def _runs_unloads(run: dg.DagsterRun) -> bool:
    """A run of one of our jobs, or of our assets picked in the UI (its plan may never have been recorded)."""
    ours = run.job_name in (DAILY_JOB, UNPARTITIONED_JOB) or run.job_name.startswith(f"{DAILY_JOB}_from_")
    return ours or any(is_unload(key) for key in run.asset_selection or ())


def _superseded_by_retry(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Dagster has launched the retry of this failed run: the retry's outcome is the news. The failed
    run is tagged announced (as the retry's), so it leaves the watermark's way."""
    retry = run.tags.get(AUTO_RETRY_RUN_TAG)
    if not retry:
        return False
    instance.add_run_tags(run.run_id, {ANNOUNCED_TAG: f"retried as {retry}", ANNOUNCED_RUN_TAG: run.run_id})
    return True


def _announced(run: dg.DagsterRun) -> bool:
    """Announced in its own right: a re-execution inherits its parent's announcement tags (the parent
    failed and was announced; the re-execution's outcome is news). Tags written before the run tag
    existed count for runs that are no re-execution."""
    if ANNOUNCED_TAG not in run.tags:
        return False
    owner = run.tags.get(ANNOUNCED_RUN_TAG)
    return owner == run.run_id if owner else run.parent_run_id is None
