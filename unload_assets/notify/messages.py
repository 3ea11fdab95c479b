"""Slack messages about unload runs: Block Kit plus a plain-text fallback. Pure: no I/O, no Dagster."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from unload_assets.delivery import Delivery
from unload_assets.secrets import scrub

# Block Kit limits: 3000 characters per section text, 50 blocks, 150 for a header; stay under them.
_SECTION_CHARS, _MAX_SECTIONS, _HEADER_CHARS, _TEXT_CHARS = 2900, 40, 150, 3500
_URIS_PER_TARGET = 3
_ERROR_CHARS = 300


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    job_name: str
    link: str
    trigger: str
    partition: str | None = None
    started: float | None = None
    ended: float | None = None
    after: str | None = None  # the run's history: "after 1 retry", "after run 1a2b3c4d failed"


@dataclass(frozen=True)
class StepFailure:
    step_key: str
    error: str


@dataclass(frozen=True)
class Untouched:
    target: str
    partition: str | None
    previous_uri: str | None = None
    previous_at: float | None = None
    rename_failed: bool = False  # the rename op stopped part-way: staging is kept for the re-run


@dataclass(frozen=True)
class SlackMessage:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def _parts_note(d: Delivery) -> str | None:
    """For the reader of the final key when it holds a manifest of parts, not the file: say so, and why."""
    if not d.in_parts:
        return None
    why = d.fallback_reason
    return "delivered as parts: the first address is a manifest of parts, not the file" + (
        f" ({why})" if why else ""
    )


def short_error(message: str, description: str | None = None) -> str:
    """One line of an error: the user's Failure description if any, without module paths or stack."""
    raw = (description or message or "").strip()
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "unknown error")
    line = re.sub(r"^(?:[A-Za-z_][\w]*\.)+(?=[A-Z]\w*: )", "", line)  # a.b.c.Failure: -> Failure:
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 1] + "…"


def success_message(
    run: RunFacts, deliveries: Sequence[Delivery], secrets: Iterable[str | None] = ()
) -> SlackMessage:
    targets = sorted({d.target for d in deliveries})
    names = ", ".join(targets) if len(targets) <= 3 else f"{len(targets)} unload targets"
    title = f"Delivered: {names}" + (f" ({run.partition})" if run.partition else "")
    title += f" {run.after}" if run.after else ""
    lines = [_delivery_line(d) for d in deliveries]
    return _message(":white_check_mark:", title, [("", lines)], run, secrets)


def failure_message(
    run: RunFacts,
    failures: Sequence[StepFailure],
    untouched: Sequence[Untouched],
    deliveries: Sequence[Delivery] = (),
    secrets: Iterable[str | None] = (),
    *,
    canceled: bool = False,
) -> SlackMessage:
    how = "canceled" if canceled else "failed"
    title = f"Unload run {how}: {run.job_name}" + (f" ({run.partition})" if run.partition else "")
    title += f" {run.after}" if run.after else ""
    failed = [f"• `{escape(f.step_key)}`: {escape(f.error)}" for f in failures] or [
        "• canceled before it finished" if canceled else "• (no step failed)"
    ]
    parts = [
        ("*Failed*", failed),
        ("*Not delivered — left as it was*", [_untouched_line(u) for u in untouched]),
        ("*Delivered in this run anyway*", [_delivery_line(d) for d in deliveries]),
    ]
    return _message(
        ":no_entry_sign:" if canceled else ":x:", title, [(h, ls) for h, ls in parts if ls], run, secrets
    )


@dataclass(frozen=True)
class BacklogLine:
    run_id: str
    job_name: str
    status: str  # SUCCESS, FAILURE, CANCELED
    partition: str | None
    what: str  # "3 delivered, not delivered: sales (unload)"
    link: str
    ended: float | None


_STATUS_EMOJI = {"SUCCESS": ":white_check_mark:", "FAILURE": ":x:", "CANCELED": ":no_entry_sign:"}


def backlog_message(lines: Sequence[BacklogLine], secrets: Iterable[str | None] = ()) -> SlackMessage:
    """One message for runs that finished while announcements could not go out (a long outage)."""
    statuses = sorted({line.status.lower() for line in lines})
    kinds = " and ".join(statuses)
    title = f":hourglass: {len(lines)} {kinds} unload runs finished while announcements were paused"
    rows = [
        f"• {_STATUS_EMOJI.get(line.status, '')} <{line.link}|{escape(line.job_name)}>"
        + (f" {escape(line.partition)}" if line.partition else "")
        + f" · {escape(line.what)}"
        + (f" · ended {slack_date(line.ended)}" if line.ended else "")
        for line in lines
    ]
    heading = "Each run is listed once; its details are in Dagster."
    return render(title, [(heading, rows)], None, secrets, where="Dagster")


@dataclass(frozen=True)
class BackfillFacts:
    backfill_id: str
    link: str
    runs: int
    started: float | None = None
    ended: float | None = None
    canceled: bool = False


@dataclass(frozen=True)
class DayFailed:
    target: str
    day: str
    stage: str  # unload, rename, schema, or "run" when the run died before saying
    error: str


def day_ranges(days: Iterable[str]) -> str:
    """ISO days as runs of consecutive days: `2026-01-01 … 2026-01-31, 2026-02-02`."""
    ordered = sorted({date.fromisoformat(d) for d in days})
    spans: list[tuple[date, date]] = []
    for day in ordered:
        if spans and (day - spans[-1][1]).days == 1:
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return ", ".join(f"{a} … {b}" if a != b else f"{a}" for a, b in spans)


def backfill_message(
    backfill: BackfillFacts,
    delivered: Sequence[Delivery],
    failed: Sequence[DayFailed],
    secrets: Iterable[str | None] = (),
) -> SlackMessage:
    """One message for a whole backfill: per target the days delivered (as ranges), rows and bytes;
    every day not delivered by name with its stage and error; a link to the backfill."""
    by_target: dict[str, list[Delivery]] = {}
    for d in delivered:
        by_target.setdefault(d.target, []).append(d)
    days = {d.partition for d in delivered} | {f.day for f in failed}
    targets = sorted(set(by_target) | {f.target for f in failed})
    what = ", ".join(targets) if len(targets) <= 3 else f"{len(targets)} unload targets"
    span = f" ({day_ranges(days)})" if len(days) <= 1 else f" ({min(days)} … {max(days)})" if days else ""
    pairs = len(delivered) + len(failed)
    if failed:
        emoji = ":no_entry_sign:" if backfill.canceled else ":x:"
        how = "canceled" if backfill.canceled else "finished"
        title = f"{emoji} Backfill {how}: {len(delivered)} of {pairs} target-days delivered, "
        title += f"{len(failed)} not: {what}{span}"
    elif backfill.canceled:
        title = f":no_entry_sign: Backfill canceled: {len(delivered)} target-days delivered: {what}{span}"
    else:
        title = f":white_check_mark: Backfill delivered: {what}, {len(days)} day(s){span}"
    lines = []
    for target in sorted(by_target):
        done = by_target[target]
        rows = sum(d.rows or 0 for d in done)
        size = sum(d.bytes or 0 for d in done)
        lines.append(
            f"• *{escape(target)}* {len(done)} day(s): {escape(day_ranges(d.partition for d in done))}"
            f" · {rows:,} rows · {format_bytes(size)}"
        )
    failures = [
        f"• *{escape(f.target)}* {escape(f.day)} ({escape(f.stage)}): {escape(f.error)}"
        for f in sorted(failed, key=lambda f: (f.day, f.target))
    ]
    parts = [("*Not delivered*", failures), ("*Delivered*", lines)]
    duration = format_duration(
        None if backfill.started is None or backfill.ended is None else backfill.ended - backfill.started
    )
    runs = f"{backfill.runs} run{'s' if backfill.runs != 1 else ''}"
    footer = f"<{backfill.link}|Backfill {escape(backfill.backfill_id)}> · {runs} · {duration}"
    if failed:
        footer += " · re-execute the days not delivered from the backfill's page"
    return render(title, [(h, ls) for h, ls in parts if ls], footer, secrets, where="the backfill")


def catalogue_message(
    instance: str, located: str, not_loaded: Sequence[str] = (), secrets: Iterable[str | None] = ()
) -> SlackMessage:
    """One catalogue problem (`located`: "path:line: where: what"), and the targets it keeps from loading."""
    if len(not_loaded) == 1:
        title = f":no_entry: Target {not_loaded[0]} is not loaded ({instance})"
    elif not_loaded:
        title = f":no_entry: {len(not_loaded)} targets are not loaded ({instance})"
    else:
        title = f":warning: Catalogue problem ({instance})"
    lines = [f"• {escape(located)}"]
    if len(not_loaded) > 1:
        shown = ", ".join(not_loaded[:20]) + (
            f" and {len(not_loaded) - 20} more" if len(not_loaded) > 20 else ""
        )
        lines.append(f"• not loaded: {escape(shown)}")
    lines.append("Fix the catalogue and reload the code location; every other target runs as usual.")
    return render(title, [("", lines)], None, secrets, where="Dagster")


def format_bytes(n: int | None) -> str:
    if n is None:
        return "? bytes"
    size, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            break
        size /= 1024
    return f"{n:,} B" if unit == "B" else f"{size:.1f} {unit}"


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "unknown duration"
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s % 60:02d}s" if m else f"{s}s")


def _delivery_line(d: Delivery) -> str:
    rows = "? rows" if d.rows is None else f"{d.rows:,} rows"
    shown = " ".join(f"`{escape(u)}`" for u in d.uris[:_URIS_PER_TARGET])
    more = f" (+{len(d.uris) - _URIS_PER_TARGET} more)" if len(d.uris) > _URIS_PER_TARGET else ""
    note = f"\n   _{escape(parts)}_" if (parts := _parts_note(d)) else ""
    note += f"\n   :warning: {escape(d.schema_change.summary())}" if d.schema_change else ""
    head = f"• *{escape(d.target)}* {escape(d.partition)} · {rows} · {format_bytes(d.bytes)}"
    return f"{head}\n   {shown}{more}{note}"


def _untouched_line(u: Untouched) -> str:
    head = f"• *{escape(u.target)}*" + (f" {escape(u.partition)}" if u.partition else "")
    if u.rename_failed:
        head += " — rename stopped part-way; staged files kept for a re-run"
    if u.previous_uri is None:
        return head + " — no earlier delivery to keep"
    when = "" if u.previous_at is None else f" (delivered {slack_date(u.previous_at)})"
    return f"{head} — last complete delivery `{escape(u.previous_uri)}`{when}"


def _message(
    emoji: str, title: str, parts: list[tuple[str, list[str]]], run: RunFacts, secrets: Iterable[str | None]
) -> SlackMessage:
    duration = format_duration(None if run.started is None or run.ended is None else run.ended - run.started)
    footer = (
        f"<{run.link}|Run {run.run_id[:8]}> · {escape(run.job_name)} · {escape(run.trigger)} · {duration}"
    )
    return render(f"{emoji} {title}", parts, footer, secrets, where="the run")


def render(
    title: str,
    parts: list[tuple[str, list[str]]],
    footer: str | None,
    secrets: Iterable[str | None],
    *,
    where: str,
) -> SlackMessage:
    """Block Kit (a header, sections cut to Slack's limits, the footer as context) and the plain-text
    fallback; `where` the rest can be read when a message is too long ("the run", "Dagster")."""
    # Scrub whole lines before anything is cut to size (a cut secret no longer matches), in both the
    # raw and the mrkdwn-escaped spelling of each secret.
    known = tuple(s for s in secrets if s)
    known += tuple(escape(s) for s in known)
    title = scrub(title, known)
    parts = [(heading, [scrub(line, known) for line in lines]) for heading, lines in parts]
    blocks: list[dict[str, Any]] = [_block("header", _plain(title[:_HEADER_CHARS]))]
    sections = [chunk for heading, lines in parts for chunk in _chunks(lines, heading)]
    if len(sections) > _MAX_SECTIONS:
        sections = [*sections[: _MAX_SECTIONS - 1], f"_… more in {where} (too long for one Slack message)_"]
    blocks += [_block("section", _mrkdwn(chunk)) for chunk in sections]
    text = "\n".join([title] + ["\n".join(([h] if h else []) + lines) for h, lines in parts])
    if len(text) > _TEXT_CHARS:
        text = text[: _TEXT_CHARS - 40] + f"\n… (more in {where})"
    if footer is None:
        return SlackMessage(text=text, blocks=blocks)
    footer = scrub(footer, known)
    blocks.append({"type": "context", "elements": [_mrkdwn(footer)]})
    return SlackMessage(text=f"{text}\n{footer}", blocks=blocks)


def _chunks(lines: list[str], heading: str) -> Iterable[str]:
    chunk = heading
    for line in lines:
        line = line if len(line) <= _SECTION_CHARS else line[: _SECTION_CHARS - 1] + "…"
        if chunk and len(chunk) + len(line) + 1 > _SECTION_CHARS:
            yield chunk
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk:
        yield chunk


def _block(kind: str, text: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "text": text}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def escape(text: str) -> str:
    # Slack mrkdwn treats these three as control characters; everything else shows as typed.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_date(ts: float) -> str:
    # Slack renders this in each reader's own time zone; the fallback (UTC) is for clients that can't.
    fallback = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time}}|{fallback}>"


# Deadlines: a target-day late, and later delivered

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
