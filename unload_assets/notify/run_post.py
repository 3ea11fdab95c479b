"""Announcing finished runs in Slack, each exactly once (the protocol every sensor shares: tick.py).

Before a post the run is tagged as attempted (`ATTEMPT_TAG`), and the message carries the run's id in its
Slack metadata; once Slack has it the run is tagged announced. A run attempted before but never tagged
is looked up in the channel's history (`RunAnnouncer.look_up`) before anything is posted again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg

from unload_assets.names import Names
from unload_assets.notify import messages
from unload_assets.notify.backfill_report import BackfillOutcome, backfill_message
from unload_assets.notify.run_report import RunOutcome, catch_up_message, message_for
from unload_assets.notify.tick import SensorCursor, SlackTick
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


class RunAnnouncer(SlackTick):
    """One tick's run announcements: each run's message (or one summary), each run tagged once Slack has
    it. Before a post the run is tagged as attempted (its id rides in the message's metadata); a run
    attempted before but never tagged announced was looked up in the channel first (`found`)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        slack: UnloadSlackResource,
        cursor: SensorCursor,
        secrets: tuple[str, ...],
        *,
        tags: RunTags,
        run_link: Callable[[str], str],
        clock: Callable[[], float],
        backfill_link: Callable[[str], str] | None = None,
        budget_seconds: float | None = None,
    ) -> None:
        super().__init__(slack, cursor, clock=clock, budget_seconds=budget_seconds)
        self.instance, self.secrets = instance, secrets
        self.found: dict[str, tuple[str, str]] = {}  # runs (and backfills) an earlier attempt posted
        self.tags, self.run_link = tags, run_link
        self.backfill_link = backfill_link or run_link
        self.backfills: list[str] = []  # backfills announced now (posted, or found in the channel)
        self.done: set[str] = set()  # announced now (posted, or found in the channel)
        self.sent: list[str] = []
        self.refused: list[str] = []
        self.summarized = 0

    def look_up(
        self, pending: list[tuple[RunRecord, RunOutcome]], backfills: Sequence[BackfillOutcome] = ()
    ) -> dict[str, tuple[str, str]] | None:
        """The pending runs (and backfills) an earlier attempt may have posted, found in the channel (one
        history read for all of them, from a minute before the earliest attempt); None when Slack cannot
        say now. A backfill's message carries its marker (`backfill/<id>`), not its runs' ids."""
        attempted = {
            r.dagster_run.run_id: when for r, _ in pending if (when := attempt_time(r.dagster_run, self.tags))
        }
        for backfill in backfills:
            times = [t for r in backfill.runs if (t := attempt_time(r.dagster_run, self.tags)) is not None]
            if times:
                attempted[backfill.marker] = min(times)
        if attempted:
            found = self.find(set(attempted), oldest=min(attempted.values()) - 60)
            if found is None:
                return None
            self.found = found
        return self.found

    def retag_found(self, run_id: str) -> bool:
        """Posted by an earlier attempt whose answer never came: tag it, never re-post."""
        if run_id not in self.found or self.stop is not None:
            return False
        channel_id, ts = self.found[run_id]
        return self._tag(run_id, channel_id, ts)

    def post_each(self, runs: list[tuple[RunRecord, RunOutcome]]) -> None:
        for record, reading in runs:
            run_id = record.dagster_run.run_id
            if self.out_of_time:
                return
            message = message_for(self.instance, record, reading, self.secrets, self.run_link)
            posted = self._post_runs(message, [record])
            if posted is None and self.stop is not None:
                return
            if posted is not None:
                self.sent.append(run_id)
                if not self._tag(run_id, *posted):
                    return

    def post_backfill(self, backfill: BackfillOutcome) -> None:
        """One message for the whole backfill, every run of it tagged announced with that message. Found
        in the channel already (an earlier tick posted it, its answer lost): tagged, never re-posted."""
        records = backfill.runs
        if backfill.marker in self.found:
            posted: tuple[str, str] | None = self.found[backfill.marker]
        else:
            if self.out_of_time or self.stop is not None:
                return
            message = backfill_message(backfill, self.secrets, self.backfill_link)
            posted = self._post_runs(message, records, marker=backfill.marker)
            if posted is None:
                return
            self.sent.append(backfill.marker)
        assert posted is not None
        for record in records:
            if not self._tag(record.dagster_run.run_id, *posted):
                return
        self.backfills.append(backfill.backfill_id)

    def post_summary(self, runs: list[tuple[RunRecord, RunOutcome]]) -> None:
        message = catch_up_message(self.instance, runs, self.secrets, self.run_link)
        posted = self._post_runs(message, [record for record, _ in runs])
        if posted is None:
            return
        for record, _ in runs:
            if not self._tag(record.dagster_run.run_id, *posted):
                return
            self.summarized += 1

    def _post_runs(
        self, message: messages.SlackMessage, records: list[RunRecord], *, marker: str | None = None
    ) -> tuple[str, str] | None:
        """Post `message` about `records` (each tagged as attempted first), marked with their ids, or
        with `marker` alone (a backfill's message: its runs may be hundreds)."""
        run_ids = [r.dagster_run.run_id for r in records]
        try:
            for run_id, record in zip(run_ids, records, strict=True):
                if attempt_time(record.dagster_run, self.tags) is None:
                    self.instance.add_run_tags(run_id, {self.tags.attempt: f"{run_id}@{self.clock():.3f}"})
        except Exception as exc:  # the attempt tag could not be written: post nothing unrecorded
            self.stop = f"could not tag run {run_ids[0][:8]} before posting ({type(exc).__name__})"
            return None
        posted = self.post(message, run_ids=[marker] if marker else run_ids)
        if isinstance(posted, NotDelivered):
            self.refused.append(f"{marker or run_ids[0][:8]}: {posted.reason}")
            return None
        return posted

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


def retag(
    instance: dg.DagsterInstance, cursor: SensorCursor, now: float, keep_seconds: float, tags: RunTags
) -> None:
    """Tag the runs Slack has but whose tag write failed (kept in the cursor), as announced."""
    for run_id, ts in list(cursor.untagged.items()):
        try:
            instance.add_run_tags(run_id, {tags.announced: ts, tags.announced_run: run_id})
            del cursor.untagged[run_id]
        except Exception:
            if float(ts or 0) < now - keep_seconds:
                del cursor.untagged[run_id]  # long out of the lookback (or deleted): nothing left to protect
