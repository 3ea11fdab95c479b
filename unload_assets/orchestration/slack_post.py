"""Posting one tick's announcements to Slack, each exactly once.

Before a post the run is tagged as attempted (`ATTEMPT_TAG`), and the message carries the run's id in its
Slack metadata; once Slack has it the run is tagged announced. A run attempted before but never tagged
is looked up in the channel's history (`already_posted`) before anything is posted again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from unload_assets import messages
from unload_assets.orchestration.names import Names
from unload_assets.orchestration.run_report import Reading, catch_up_message, message_for
from unload_assets.orchestration.sensor_cursor import Cursor
from unload_assets.resources.slack import NotDelivered, UnloadSlackResource

# The tags written before runs were announced per instance: a run carrying them was announced already.
LEGACY_ANNOUNCED_TAG = "unload_assets/slack_announced"
LEGACY_ANNOUNCED_RUN_TAG = "unload_assets/slack_announced_run"
RunRecord = dg.RunRecord


@dataclass(frozen=True)
class RunTags:
    """The run tags one instance's Slack sensors write (another instance's are not its business).

    `announced`: the Slack message ts (proof, and where to look); `announced_run`: the run the announcement
    was for (re-executions copy their parent's tags); `attempt`: "<run id>@<unix time>" of the first post."""

    announced: str
    announced_run: str
    channel: str
    attempt: str

    @classmethod
    def of(cls, names: Names) -> RunTags:
        return cls(
            announced=names.tag("slack_announced"),
            announced_run=names.tag("slack_announced_run"),
            channel=names.tag("slack_channel"),
            attempt=names.tag("slack_attempt"),
        )


class Posting:
    """One tick's posting: each run's message (or one summary), each run tagged once Slack has it."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        slack: UnloadSlackResource,
        cursor: Cursor,
        secrets: tuple[str, ...],
        found: dict[str, tuple[str, str]],
        *,
        tags: RunTags,
        run_link: Callable[[str], str],
        clock: Callable[[], float],
        budget_seconds: float,
    ) -> None:
        self.instance, self.slack, self.cursor, self.secrets, self.found = (
            instance,
            slack,
            cursor,
            secrets,
            found,
        )
        self.tags, self.run_link = tags, run_link
        self.done: set[str] = set()  # announced now (posted, or found in the channel)
        self.sent: list[str] = []
        self.refused: list[str] = []
        self.summarized = 0
        self.stop: str | None = None
        self.clock = clock
        self.deadline = time.monotonic() + budget_seconds

    def retag_found(self, run_id: str) -> bool:
        """Posted by an earlier attempt whose answer never came: tag it, never re-post."""
        if run_id not in self.found or self.stop is not None:
            return False
        channel_id, ts = self.found[run_id]
        return self._tag(run_id, channel_id, ts)

    def post_each(self, runs: list[tuple[RunRecord, Reading]]) -> None:
        for record, reading in runs:
            run_id = record.dagster_run.run_id
            if time.monotonic() > self.deadline:
                self.stop = "time budget of this tick used up"
                return
            message = message_for(self.instance, record, reading, self.secrets, self.run_link)
            posted = self._post(message, [record])
            if posted is None and self.stop is not None:
                return
            if posted is not None:
                self.sent.append(run_id)
                if not self._tag(run_id, *posted):
                    return

    def post_summary(self, runs: list[tuple[RunRecord, Reading]]) -> None:
        message = catch_up_message(self.instance, runs, self.secrets, self.run_link)
        posted = self._post(message, [record for record, _ in runs])
        if posted is None:
            return
        for record, _ in runs:
            if not self._tag(record.dagster_run.run_id, *posted):
                return
            self.summarized += 1

    def _post(self, message: messages.SlackMessage, records: list[RunRecord]) -> tuple[str, str] | None:
        run_ids = [r.dagster_run.run_id for r in records]
        try:
            for run_id, record in zip(run_ids, records, strict=True):
                if attempt_time(record.dagster_run, self.tags) is None:
                    self.instance.add_run_tags(run_id, {self.tags.attempt: f"{run_id}@{self.clock():.3f}"})
            return self.slack.post(message.text, message.blocks, run_id=run_ids[0], also=run_ids[1:])
        except NotDelivered as exc:
            if exc.retry_after is not None:
                self.cursor.not_before = self.clock() + exc.retry_after
            if exc.only_this_message and len(run_ids) == 1:  # one malformed message holds back no other
                self.refused.append(f"{run_ids[0][:8]}: {exc.reason}")
                return None
            self.stop = exc.reason + (
                "; looked up in the channel before any new post" if exc.maybe_posted else ""
            )
        except Exception as exc:  # the attempt tag could not be written: post nothing unrecorded
            self.stop = f"could not tag run {run_ids[0][:8]} before posting ({type(exc).__name__})"
        return None

    def _tag(self, run_id: str, channel_id: str, ts: str) -> bool:
        """Tag the run announced; a crash before this write is what the attempt tag and the history
        lookup cover. False (and the tick stops) when the tag cannot be written."""
        try:
            tags = self.tags
            self.instance.add_run_tags(
                run_id, {tags.announced: ts, tags.announced_run: run_id, tags.channel: channel_id}
            )
        except Exception as exc:  # Slack has it: remember in the cursor so it is never re-posted
            self.cursor.untagged[run_id] = ts
            self.done.add(run_id)
            self.stop = (
                f"could not tag run {run_id[:8]} as announced ({type(exc).__name__}); will retry the tag"
            )
            return False
        self.done.add(run_id)
        return True


def attempt_time(run: dg.DagsterRun, tags: RunTags) -> float | None:
    """When a post of this run was first attempted (the tag a re-execution inherits is its parent's)."""
    owner, _, when = run.tags.get(tags.attempt, "").partition("@")
    try:
        return float(when) if owner == run.run_id else None
    except ValueError:
        return None


def already_posted(
    slack: UnloadSlackResource, pending: list[tuple[RunRecord, Reading]], tags: RunTags
) -> dict[str, tuple[str, str]]:
    """The pending runs an earlier attempt may have posted, looked up in the channel (one history read
    for all of them, from a minute before the earliest attempt)."""
    attempted = {
        r.dagster_run.run_id: when for r, _ in pending if (when := attempt_time(r.dagster_run, tags))
    }
    if not attempted:
        return {}
    return slack.find_posted(set(attempted), oldest=min(attempted.values()) - 60)


def retag(
    instance: dg.DagsterInstance, cursor: Cursor, now: float, keep_seconds: float, tags: RunTags
) -> None:
    """Tag the runs Slack has but whose tag write failed (kept in the cursor), as announced."""
    for run_id, ts in list(cursor.untagged.items()):
        try:
            instance.add_run_tags(run_id, {tags.announced: ts, tags.announced_run: run_id})
            del cursor.untagged[run_id]
        except Exception:
            if float(ts or 0) < now - keep_seconds:
                del cursor.untagged[run_id]  # long out of the lookback (or deleted): nothing left to protect
