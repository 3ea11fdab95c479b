"""The deadline sensor `unload_deadline_to_slack`: a Slack message when a target's day is not delivered
by its `deliver_by`, and a "now delivered" when it lands.

Each tick looks at the target-days whose deadline passed since its watermark (the cursor's `since`;
a sensor started for the first time looks back 24 hours, a daemon stopped for longer at most a week).
One not delivered is told late, with why as far as the instance knows (lateness.py); the watermark
moves past it only once Slack has the message, so a Slack outage delays the alert instead of losing it
(and an alert whose day was delivered meanwhile is not sent at all). Target-days told late stay in the
cursor until their delivery is told, for at most a week. Every message is posted at most once per
target-day (deadline_post.py), and the state lives in the cursor, where Dagster keeps sensor state: a
daemon restart neither repeats nor drops a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.configuration import Configuration
from unload_assets.deadline import TargetDay, Watched, due_between, parse_deliver_by, run_date_of, target_day
from unload_assets.notify import tick
from unload_assets.notify.deadline_post import DeadlineNotifier
from unload_assets.notify.lateness import DeliveryLookup
from unload_assets.notify.tick import BACKLOG, LOOKBACK, SensorCursor
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets.secrets import scrub


def build_deadline_sensor(config: Configuration, targets: Sequence[UnloadTarget]) -> dg.SensorDefinition:
    """The deadline sensor for the instance's targets with a `deliver_by` (local times of its time zone)."""
    watched = watch_list(targets, config)
    slack_key, timezone = config.names.slack, config.timezone

    @dg.sensor(
        name=config.names.deadline_sensor,
        minimum_interval_seconds=config.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"One Slack message when a target's day is not delivered by its deliver_by ({len(watched)} "
            f"target(s), local time of {timezone}), and one when it lands."
        ),
        required_resource_keys={slack_key},
    )
    def _evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return check_deadlines(context, getattr(context.resources, slack_key), watched, config, targets)

    return _evaluate


def watch_list(targets: Sequence[UnloadTarget], config: Configuration) -> list[Watched]:
    return [
        Watched(
            target=t.name,
            deliver_by=parse_deliver_by(t.deliver_by, config.run_at),
            daily=t.partitioning.type == "daily",
            first_partition=getattr(t.partitioning, "start_date", None),
            run_at=config.run_at,
        )
        for t in targets
        if t.deliver_by
    ]


def check_deadlines(
    context: dg.SensorEvaluationContext,
    slack: UnloadSlackResource,
    watched: list[Watched],
    config: Configuration,
    targets: Sequence[UnloadTarget],
) -> dg.SensorResult:
    cursor, now, tz = SensorCursor.parse(context.cursor), tick.now(), config.timezone
    if not watched:
        return dg.SensorResult(
            skip_reason="No target has a deliver_by: nothing to watch.", cursor=cursor.dump()
        )
    names = {t.name for t in targets}

    def target_of(key: dg.AssetKey | None) -> str | None:
        target = config.names.target_of(key)
        return target if target in names else None

    lookup = DeliveryLookup(context.instance, config.names, target_of, config.run_link)
    start = cursor.since if cursor.since is not None else now - LOOKBACK.total_seconds()
    due = due_between(watched, tz, max(start, now - BACKLOG.total_seconds()), now)
    late = [(t, lookup.why_late(t)) for t in due if t.key not in cursor.late and lookup.landed(t) is None]
    landed, dropped = [], 0
    by_name = {w.target: w for w in watched}
    for key, told in list(cursor.late.items()):
        restored = _restore(key, told.due, by_name, tz)
        if restored is None or told.due < now - BACKLOG.total_seconds():
            del cursor.late[key]  # no longer watched, or waited for a week: no follow-up will come
            dropped += 1
        elif (found := lookup.landed(restored)) is not None:
            landed.append((restored, found))
    problem = slack.misconfiguration()
    if problem or cursor.not_before > now:
        until = datetime.fromtimestamp(cursor.not_before, timezone.utc).strftime("%H:%M:%S UTC")
        reason = problem or f"Slack asked us to wait until {until}"
        cursor.since = _watermark(late, cursor, now)
        waiting = f"{len(late)} late and {len(landed)} now delivered target-day(s) waiting"
        return dg.SensorResult(skip_reason=f"{reason}; {waiting}.", cursor=cursor.dump())
    secrets = config.secret_values(slack.token)
    notifier = DeadlineNotifier(slack, cursor, secrets, clock=lambda: tick.now())
    notifier.tell(late, landed)
    cursor.since = _watermark(late, cursor, now)
    return dg.SensorResult(
        skip_reason=scrub(_summary(notifier, len(due), dropped), secrets), cursor=cursor.dump()
    )


def _restore(key: str, due: float, by_name: dict[str, Watched], tz: str) -> TargetDay | None:
    """The target-day a cursor entry stands for, from its target's rules of today."""
    watched = by_name.get(key.partition("/")[0])
    told = target_day(watched, run_date_of(due, tz), tz) if watched else None
    return told if told is not None and told.key == key else None


def _watermark(late: Sequence[tuple[TargetDay, object]], cursor: SensorCursor, now: float) -> float:
    """Up to the first late target-day Slack does not have yet (checked again next tick), else now."""
    untold = [told.due for told, _ in late if told.key not in cursor.late]
    return min(untold) - 0.001 if untold else now


def _summary(notifier: DeadlineNotifier, due: int, dropped: int) -> str:
    waiting = f"{len(notifier.cursor.late)} target-day(s) told late await their delivery"
    if not (due or notifier.told_late or notifier.told_landed or notifier.stop or dropped):
        return f"No deadline passed since the last tick; {waiting}."
    summary = f"{due} deadline(s) passed; told late: {_names(notifier.told_late) or 'none'}"
    summary += f"; now delivered: {_names(notifier.told_landed)}" if notifier.told_landed else ""
    summary += f"; {notifier.found} found already in the channel, not posted again" if notifier.found else ""
    summary += f"; stopped: {notifier.stop}; the rest is retried next tick" if notifier.stop else ""
    summary += f"; {dropped} late target-day(s) no longer followed" if dropped else ""
    if notifier.unread:
        summary += f"; could not look for earlier posts ({notifier.unread}): posted, a duplicate is possible"
    return f"{summary}; {waiting}."


def _names(keys: list[str], most: int = 10) -> str:
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")
