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

Backfills: no run of a backfill is announced on its own. Once the backfill is over (Dagster launches no
more runs for it, every run and every promised retry has finished), one message tells all of it
(backfill_report.py): the failure sensor's when any run of it failed or was cancelled, else the success
sensor's. Its runs hold the watermark until then, and are all tagged announced with that one message,
which carries `backfill/<id>` in its Slack metadata for the history lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import dagster as dg

from unload_assets.catalogue import Catalogue, Problem
from unload_assets.configuration import Configuration
from unload_assets.notify import tick
from unload_assets.notify.backfill_report import (
    BACKFILL_TAG,
    BackfillOutcome,
    backfill_over,
    backfill_runs,
    read_backfill,
    runs_settled,
)
from unload_assets.notify.catalogue_notices import tell_problems
from unload_assets.notify.run_post import (
    LEGACY_ANNOUNCED_RUN_TAG,
    LEGACY_ANNOUNCED_TAG,
    RunAnnouncer,
    RunTags,
    retag,
)
from unload_assets.notify.run_report import RunOutcome, read_run
from unload_assets.notify.tick import AUTO_RETRY_RUN_TAG, LOOKBACK, WILL_RETRY_TAG, SensorCursor
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets.secrets import scrub

MARGIN_SECONDS = 300.0  # the watermark trails the clock: a run's end is committed a moment after it ends
CATCH_UP_THRESHOLD = 10  # more runs than this waiting at once (an outage): one summary message
CATCH_UP_MAX = 50  # runs in one summary (their ids ride in its Slack metadata); more take more ticks
RETRY_WAIT = timedelta(hours=1)  # a retry Dagster said it would start, but has not: announce the failure
# With run retries on, Dagster tags a failed run `dagster/will_retry` right after writing its failure: a
# tick in between would announce a failure its retry is about to contradict (seen in test_recovery.py,
# a run failed by run monitoring). Such a run waits for the tag, this long at most.
DECISION_WAIT = timedelta(seconds=30)
__all__ = [
    "SensorCursor",
    "RunTags",
    "Watch",
    "announce",
    "build_notification_sensors",
    "notification_sensors",
]
RunRecord = dg.RunRecord


@dataclass(frozen=True)
class Watch:
    """What one instance's run sensors announce: runs of its jobs and targets, tagged with its tags; the
    failure sensor also tells the catalogue's problems."""

    config: Configuration
    target_names: frozenset[str] | None  # None: every asset of the instance's key shape
    problems: tuple[Problem, ...] = ()
    kept_from_loading: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # notice id -> targets

    def target_of(self, key: dg.AssetKey | None) -> str | None:
        target = self.config.names.target_of(key)
        return target if self.target_names is None or target in self.target_names else None

    @property
    def tags(self) -> RunTags:
        return RunTags.of(self.config.names)

    def owns(self, run: dg.DagsterRun) -> bool:
        """A run of one of this instance's jobs, or of its assets picked in the UI."""
        keys = run.asset_selection or ()
        return self.config.names.owns_job(run.job_name) or any(self.target_of(key) for key in keys)


def build_notification_sensors(config: Configuration, catalogue: Catalogue) -> list[dg.SensorDefinition]:
    """The instance's two Slack sensors; each looks for finished runs every `sensor_interval_seconds` at most,
    and the failure sensor tells each of the catalogue's problems once."""
    kept: dict[str, list[str]] = {}
    for entry in catalogue.not_loaded:
        for problem in entry.problems:
            kept.setdefault(problem.notice_id, []).append(entry.name)
    watch = Watch(
        config,
        frozenset(t.name for t in catalogue.targets),
        catalogue.problems,
        {notice: tuple(targets) for notice, targets in kept.items()},
    )
    return notification_sensors(watch)


def notification_sensors(watch: Watch) -> list[dg.SensorDefinition]:
    """The success and the failure sensor of what `watch` describes."""
    names = watch.config.names
    return [
        _sensor(names.success_sensor, dg.DagsterRunStatus.SUCCESS, watch),
        _sensor(names.failure_sensor, dg.DagsterRunStatus.FAILURE, watch),  # and CANCELED
    ]


def _sensor(name: str, status: dg.DagsterRunStatus, watch: Watch) -> dg.SensorDefinition:
    slack_key = watch.config.names.slack
    what = status.value.lower()
    told = " and each catalogue problem once" if status == dg.DagsterRunStatus.FAILURE else ""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=watch.config.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"One Slack message per {what} run of '{watch.config.names.instance}'{told}, "
        "retried until sent.",
        required_resource_keys={slack_key},
    )
    def _evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return announce(context, getattr(context.resources, slack_key), status, watch)

    return _evaluate


def announce(
    context: dg.SensorEvaluationContext,
    slack: UnloadSlackResource,
    status: dg.DagsterRunStatus,
    watch: Watch,
) -> dg.SensorResult:
    cursor, instance, now, tags = SensorCursor.parse(context.cursor), context.instance, tick.now(), watch.tags
    retag(instance, cursor, now, keep_seconds=2 * LOOKBACK.total_seconds(), tags=tags)
    told = ""
    if status == dg.DagsterRunStatus.FAILURE and not slack.misconfiguration() and cursor.not_before <= now:
        told = tell_problems(
            slack,
            cursor,
            watch.problems,
            watch.config.secret_values(slack.token),
            kept_from_loading=watch.kept_from_loading,
            instance=watch.config.names.instance,
            clock=lambda: tick.now(),
        )
    pending, held = _pending(instance, status, cursor, now, watch)
    backfills, backfill_held = _backfills(instance, status, cursor, now, watch)
    held += backfill_held
    waiting = f"{len(pending)} {status.value.lower()} unload run(s) waiting"
    waiting += f" and {len(backfills)} backfill(s)" if backfills else ""
    problem = slack.misconfiguration()
    if problem or cursor.not_before > now or not (pending or backfills):
        until = datetime.fromtimestamp(cursor.not_before, timezone.utc).strftime("%H:%M:%S UTC")
        reason = f"Slack asked us to wait until {until}" if cursor.not_before > now else problem
        _advance(cursor, [*_ends(pending), *_backfill_ends(backfills), *held], now)
        skip = f"{reason}; {waiting}." if reason else "Nothing to announce."
        skip += f" {len(held)} failed run(s) wait for Dagster's retry." if held else ""
        skip += f" {told}" if told else ""
        return dg.SensorResult(skip_reason=skip, cursor=cursor.dump())
    secrets = watch.config.secret_values(slack.token)
    posting = RunAnnouncer(
        instance,
        slack,
        cursor,
        secrets,
        tags=tags,
        run_link=watch.config.run_link,
        backfill_link=watch.config.backfill_link,
        clock=lambda: tick.now(),
    )
    found = posting.look_up(pending, backfills)
    if found is None:  # Slack cannot say now: ask again next tick rather than guess
        _advance(cursor, [*_ends(pending), *_backfill_ends(backfills), *held], now)
        summary = f"Announced 0 of {len(pending)} run(s); stopped: {posting.stop}."
        return dg.SensorResult(skip_reason=scrub(summary, secrets), cursor=cursor.dump())
    for backfill in backfills:  # one message each, before the single runs
        posting.post_backfill(backfill)
    rest = [(r, reading) for r, reading in pending if not posting.retag_found(r.dagster_run.run_id)]
    if posting.stop is None and len(rest) > CATCH_UP_THRESHOLD:
        posting.post_summary(rest[:CATCH_UP_MAX])
    elif posting.stop is None:
        posting.post_each(rest)
    left = [(r, reading) for r, reading in pending if r.dagster_run.run_id not in posting.done]
    unannounced = [b for b in backfills if b.backfill_id not in posting.backfills]
    _advance(cursor, [*_ends(left), *_backfill_ends(unannounced), *held], now)
    singles = len(posting.done) - sum(len(b.runs) for b in backfills if b.backfill_id in posting.backfills)
    summary = f"Announced {singles} of {len(pending)} run(s)"
    summary += (
        f" ({', '.join(r[:8] for r in posting.sent if '/' not in r)})" if singles and posting.sent else ""
    )
    if backfills:
        summary += f"; {len(posting.backfills)} of {len(backfills)} backfill(s) in one message each"
        summary += f" ({', '.join(posting.backfills)})" if posting.backfills else ""
    summary += f"; {posting.summarized} in one catch-up message" if posting.summarized else ""
    summary += f"; {len(found)} found already in the channel, not posted again" if found else ""
    summary += f"; stopped: {posting.stop}; the rest is retried next tick" if posting.stop else ""
    summary += f"; Slack refused: {'; '.join(posting.refused)}" if posting.refused else ""
    summary += f"; {len(held)} failed run(s) wait for Dagster's retry" if held else ""
    if posting.unread:
        summary += (
            f"; could not look for earlier attempts ({posting.unread}): posted again, a duplicate is possible"
        )
    summary += f". {told}" if told else ""
    return dg.SensorResult(skip_reason=scrub(summary + ".", secrets), cursor=cursor.dump())


def _ends(runs: list[tuple[RunRecord, RunOutcome]]) -> list[float]:
    return [_ended(record) for record, _ in runs]


def _backfill_ends(backfills: list[BackfillOutcome]) -> list[float]:
    return [_ended(record) for backfill in backfills for record in backfill.runs]


def _ended(record: RunRecord) -> float:
    return record.end_time or record.update_timestamp.timestamp()


def _advance(cursor: SensorCursor, unannounced_ends: list[float], now: float) -> None:
    """The watermark: up to the oldest run still to announce, else shortly before now."""
    cursor.since = min([*unannounced_ends, now - MARGIN_SECONDS])


def _statuses(status: dg.DagsterRunStatus) -> list[dg.DagsterRunStatus]:
    """The failure sensor tells of cancelled runs too: they did not deliver either."""
    if status == dg.DagsterRunStatus.FAILURE:
        return [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    return [status]


def _pending(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, cursor: SensorCursor, now: float, watch: Watch
) -> tuple[list[tuple[RunRecord, RunOutcome]], list[float]]:
    """Runs to announce, oldest first; and the end times of failed runs held back for Dagster's retry."""
    since = cursor.since if cursor.since is not None else now - LOOKBACK.total_seconds()
    # updated_after narrows the query; tag writes bump update_timestamp, so end_time decides the window.
    filters = dg.RunsFilter(
        statuses=_statuses(status), updated_after=datetime.fromtimestamp(since, timezone.utc)
    )
    found, held = [], []
    for record in instance.get_run_records(filters):
        run, ended = record.dagster_run, _ended(record)
        if _announced(run, watch.tags) or run.run_id in cursor.untagged or ended < since:
            continue
        if _of_backfill(instance, run):
            continue  # told with its backfill (_backfills)
        if _retry_undecided(instance, run, ended, now):
            held.append(ended)
            continue  # Dagster is about to say whether it retries the run
        if run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true":
            if _superseded_by_retry(instance, run, watch.tags):
                continue  # its retry is announced, with the final outcome
            if ended > now - RETRY_WAIT.total_seconds():
                held.append(ended)
                continue  # the retry is about to start
        reading = read_run(instance, run.run_id, watch.target_of)
        if reading.deliveries or (status == dg.DagsterRunStatus.FAILURE and reading.planned):
            found.append((ended, record, reading))
        elif status == dg.DagsterRunStatus.FAILURE and run.status == dg.DagsterRunStatus.CANCELED:
            found.append((ended, record, reading))  # cancelled before anything was planned: say so too
        elif status == dg.DagsterRunStatus.FAILURE and watch.owns(run):
            # Failed before its plan was recorded: a daemon killed while it created or launched the run
            # leaves it NOT_STARTED or STARTING, and run monitoring fails it once the start times out.
            found.append((ended, record, reading))
    return [(record, reading) for _, record, reading in sorted(found, key=lambda f: f[0])], held


def _of_backfill(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """A run of a backfill, or a retry Dagster launched of one after the backfill ended (untagged)."""
    if run.tags.get(BACKFILL_TAG):
        return True
    parent = run.parent_run_id if run.tags.get(tick.RETRY_NUMBER_TAG) else None
    while parent:
        earlier = instance.get_run_by_id(parent)
        if earlier is None:
            return False
        if earlier.tags.get(BACKFILL_TAG):
            return True
        parent = earlier.parent_run_id if earlier.tags.get(tick.RETRY_NUMBER_TAG) else None
    return False


def _backfills(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, cursor: SensorCursor, now: float, watch: Watch
) -> tuple[list[BackfillOutcome], list[float]]:
    """Backfills over and this sensor's to tell, oldest first; and the end times of runs of backfills
    still going (they hold the watermark)."""
    since = cursor.since if cursor.since is not None else now - LOOKBACK.total_seconds()
    filters = dg.RunsFilter(
        statuses=_statuses(status), updated_after=datetime.fromtimestamp(since, timezone.utc)
    )
    ids: dict[str, None] = {}
    for record in instance.get_run_records(filters):
        run = record.dagster_run
        backfill_id = run.tags.get(BACKFILL_TAG)
        if backfill_id and not _announced(run, watch.tags) and run.run_id not in cursor.untagged:
            ids.setdefault(backfill_id)
    found, held = [], []
    for backfill_id in ids:
        runs = backfill_runs(instance, backfill_id)
        retries_on = bool(getattr(instance, "run_retries_enabled", False))
        settled = runs_settled(runs, now, RETRY_WAIT, decision_wait=DECISION_WAIT if retries_on else None)
        if not backfill_over(instance, backfill_id) or not settled:
            held += [_ended(r) for r in runs if r.dagster_run.is_finished]
            continue
        outcome = read_backfill(instance, backfill_id, runs, watch.target_of)
        if not (outcome.delivered or outcome.failed):
            continue  # a backfill of other assets than this instance's targets
        if outcome.any_run_failed == (status == dg.DagsterRunStatus.FAILURE):
            found.append(outcome)
    return sorted(found, key=lambda b: max(_ended(r) for r in b.runs)), held


def _retry_undecided(instance: dg.DagsterInstance, run: dg.DagsterRun, ended: float, now: float) -> bool:
    """A failed run whose retry Dagster has not decided yet: run retries are on, the run is not tagged
    `dagster/will_retry` yet, and it failed less than DECISION_WAIT ago."""
    return (
        run.status == dg.DagsterRunStatus.FAILURE
        and WILL_RETRY_TAG not in run.tags
        and ended > now - DECISION_WAIT.total_seconds()
        and bool(getattr(instance, "run_retries_enabled", False))
    )


def _superseded_by_retry(instance: dg.DagsterInstance, run: dg.DagsterRun, tags: RunTags) -> bool:
    """Dagster has launched the retry of this failed run: the retry's outcome is the news. The failed
    run is tagged announced (as the retry's), so it leaves the watermark's way."""
    retry = run.tags.get(AUTO_RETRY_RUN_TAG)
    if not retry:
        return False
    instance.add_run_tags(run.run_id, {tags.announced: f"retried as {retry}", tags.announced_run: run.run_id})
    return True


def _announced(run: dg.DagsterRun, tags: RunTags) -> bool:
    """Announced in its own right: a re-execution inherits its parent's announcement tags (the parent
    failed and was announced; the re-execution's outcome is news). Tags written before the run tag
    existed count for runs that are no re-execution; so do the tags of the time before instances."""
    for announced, announced_run in (
        (tags.announced, tags.announced_run),
        (LEGACY_ANNOUNCED_TAG, LEGACY_ANNOUNCED_RUN_TAG),
    ):
        if announced in run.tags:
            owner = run.tags.get(announced_run)
            if owner == run.run_id if owner else run.parent_run_id is None:
                return True
    return False
