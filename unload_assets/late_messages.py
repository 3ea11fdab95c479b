"""Slack messages about delivery deadlines: "late" and "now delivered". Pure: no I/O, no Dagster.

Rendered by the same code as every run message (messages.py: Block Kit limits, secrets scrubbed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from unload_assets.messages import SlackMessage, escape, format_duration, render, slack_date

# Why a target-day is late, as far as the instance knows (the words the message uses).
FAILED, RUNNING, QUEUED, CANCELED = "failed", "still running", "queued", "canceled"
NEVER_LAUNCHED, WITHOUT_IT = "never launched", "finished without delivering it"


@dataclass(frozen=True)
class Late:
    target: str
    day: str  # the partition, or the date of an unpartitioned target's run
    due: str  # "09:30 America/Los_Angeles"
    reason: str  # FAILED, RUNNING, QUEUED, CANCELED, NEVER_LAUNCHED or WITHOUT_IT
    detail: str = ""  # the error of a failed run
    since: float | None = None  # when the run started (running), or was queued (queued); Unix time
    run_id: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class Landed:
    target: str
    day: str
    due: str
    at: float  # when it was delivered (Unix time)
    late_by: float  # seconds after the deadline
    uri: str | None = None
    run_id: str | None = None
    link: str | None = None


def late_message(items: Sequence[Late], secrets: Iterable[str | None] = ()) -> SlackMessage:
    """One message for target-days not delivered by their deadline: each with why, as far as known."""
    if len(items) == 1:
        one = items[0]
        title = f":alarm_clock: Late: {one.target} {one.day} not delivered by {one.due} ({one.reason})"
    else:
        title = f":alarm_clock: Late: {len(items)} unload targets not delivered by their deadline"
        title += f" ({items[0].day})" if len({i.day for i in items}) == 1 else ""
    lines = [_late_line(item) for item in items]
    heading = "A follow-up comes when each lands."
    return render(title, [(heading, lines)], None, secrets, where="Dagster")


def landed_message(items: Sequence[Landed], secrets: Iterable[str | None] = ()) -> SlackMessage:
    """The follow-up of late messages: these target-days are now delivered."""
    if len(items) == 1:
        one = items[0]
        late = format_duration(max(one.late_by, 0))
        title = (
            f":white_check_mark: Now delivered: {one.target} {one.day}, {late} after its {one.due} deadline"
        )
    else:
        title = f":white_check_mark: Now delivered: {len(items)} unload targets that were late"
    lines = [_landed_line(item) for item in items]
    return render(title, [("", lines)], None, secrets, where="Dagster")


def _late_line(item: Late) -> str:
    run = f"<{item.link}|run {item.run_id[:8]}> " if item.link and item.run_id else ""
    when = slack_date(item.since) if item.since else ""
    why = {
        FAILED: f"{run}failed",
        RUNNING: f"{run}still running" + (f", started {when}" if when else ""),
        QUEUED: f"{run}queued" + (f" since {when}" if when else "") + ", not started",
        CANCELED: f"{run}was canceled",
        WITHOUT_IT: f"{run}finished without delivering it",
        NEVER_LAUNCHED: "never launched: no run of this day (is the daemon up and the 09:00 schedule on?)",
    }.get(item.reason, escape(item.reason))
    detail = f": {escape(item.detail)}" if item.detail else ""
    return f"• *{escape(item.target)}* {escape(item.day)} — due {escape(item.due)} — {why}{detail}"


def _landed_line(item: Landed) -> str:
    head = f"• *{escape(item.target)}* {escape(item.day)} — delivered {slack_date(item.at)}"
    head += f", {format_duration(max(item.late_by, 0))} after its {escape(item.due)} deadline"
    uri = f" · `{escape(item.uri)}`" if item.uri else ""
    run = f" · <{item.link}|Run {item.run_id[:8]}>" if item.link and item.run_id else ""
    return head + uri + run
