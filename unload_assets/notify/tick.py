"""What every Slack sensor tick shares: the clock, the limits, the cursor and the exactly-once post.

All three sensors (run success, run failure, deadlines) follow one protocol:
- a **watermark** in the sensor's cursor (`SensorCursor.since`): everything that ended (or fell due)
  before it is told; it only moves past what Slack has, so a daemon down for a weekend misses nothing;
- a **Retry-After** from Slack is kept in the cursor (`not_before`) and honoured across ticks;
- a **time budget** per tick, well inside Dagster's 60 s sensor timeout: what is left waits for the next
  tick;
- **exactly once**: each message carries the ids of what it tells in its Slack metadata, and whatever an
  earlier tick may have posted without learning the answer is looked up in the channel's history before
  anything is posted again (`SlackTick.find`, then `SlackTick.post`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

from unload_assets.notify.messages import SlackMessage
from unload_assets.resources.slack import NotDelivered, UnloadSlackResource

LOOKBACK = timedelta(hours=24)  # how far back a sensor's very first tick looks (no watermark yet)
BACKLOG = timedelta(days=7)  # the furthest back the deadline sensor looks, and how long a late day waits
TICK_BUDGET_SECONDS = 15.0  # well inside Dagster's 60 s sensor timeout; the rest waits for the next tick
WILL_RETRY_TAG = "dagster/will_retry"  # Dagster's: "true" on a failed run its run retries will retry
AUTO_RETRY_RUN_TAG = "dagster/auto_retry_run_id"  # Dagster's: the retry run, once launched
RETRY_NUMBER_TAG = "dagster/retry_number"  # Dagster's: set on each retry run


def now() -> float:
    """The sensors' clock: a seam for tests (deadlines pass, Retry-After expires, without waiting)."""
    return time.time()


class LateNotice(NamedTuple):
    """A target-day told late: its deadline (Unix time) and the late message's Slack ts."""

    due: float
    ts: str


@dataclass
class SensorCursor:
    """What a Slack sensor keeps between ticks, in its cursor (where Dagster keeps sensor state).

    `since`: the watermark (None: the first tick, which looks back `LOOKBACK`).
    `not_before`: a long Retry-After from Slack, honoured across ticks instead of hammering it.
    `untagged`: runs Slack accepted whose announced tag failed to write (retag them, never re-post).
    `notices`: the catalogue problems told (the failure sensor's).
    `late`: the target-days told late, awaiting their "now delivered", by "<target>/<day>" (the deadline
    sensor's).
    Each sensor uses the fields it needs; the others stay empty and are not written."""

    since: float | None = None
    not_before: float = 0.0
    untagged: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    late: dict[str, LateNotice] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> SensorCursor:
        try:
            data = json.loads(raw or "{}")
            since = data.get("since")
            return cls(
                since=float(since) if since is not None else None,
                not_before=float(data.get("not_before", 0)),
                untagged=dict(data.get("untagged") or {}),
                notices=[str(notice) for notice in data.get("notices") or []],
                late={
                    str(key): LateNotice(float(due), str(ts))
                    for key, (due, ts) in dict(data.get("late") or {}).items()
                },
            )
        except (ValueError, TypeError, AttributeError):
            # Unreadable: the first tick's look back, the run tags and the channel's history keep repeats out.
            return cls()

    def dump(self) -> str:
        data: dict[str, Any] = {"since": self.since, "not_before": self.not_before}
        for name in ("untagged", "notices", "late"):
            if value := getattr(self, name):
                data[name] = value
        return json.dumps(data, sort_keys=True)

    def deferred(self, clock: float) -> bool:
        """Slack asked us to wait (Retry-After) and the wait is not over."""
        return clock < self.not_before


class SlackTick:
    """One tick's posting: the budget, the Retry-After kept in the cursor, and the first reason to stop.

    `post` and `find` never raise for Slack's sake: a refusal sets `stop` (the tick ends, the watermark
    stays) or, for a message Slack refuses alone, is returned to the caller to report."""

    def __init__(
        self,
        slack: UnloadSlackResource,
        cursor: SensorCursor,
        *,
        clock: Callable[[], float] = lambda: now(),
        budget_seconds: float | None = None,
    ) -> None:
        self.slack, self.cursor, self.clock = slack, cursor, clock
        budget = TICK_BUDGET_SECONDS if budget_seconds is None else budget_seconds
        self.deadline = time.monotonic() + budget
        self.stop: str | None = None
        self.unread: str | None = None  # why the channel's history could not be read (posted anyway)

    @property
    def out_of_time(self) -> bool:
        if time.monotonic() > self.deadline:
            self.stop = "time budget of this tick used up"
            return True
        return False

    def find(self, ids: set[str], oldest: float) -> dict[str, tuple[str, str]] | None:
        """What of `ids` is in the channel already, by id: (channel id, ts). None: Slack cannot say now,
        and the tick stops; a bot that may not read the history gets `{}` (posting anyway: a repeated alert
        is better than a missing one) and `unread` says why."""
        try:
            return self.slack.find_posted(ids, oldest=oldest)
        except NotDelivered as exc:
            self.defer(exc)
            if not exc.cannot_read:
                self.stop = f"{exc.reason}; looked up again next tick before any post"
                return None
            self.unread = exc.reason
            return {}

    def post(
        self, message: SlackMessage, *, run_ids: Iterable[str] = (), notices: Iterable[str] = ()
    ) -> tuple[str, str] | NotDelivered | None:
        """Post `message` carrying `run_ids` / `notices` in its metadata: (channel id, ts) once Slack has
        it; the `NotDelivered` when Slack refused this one message only (others may still go); None when
        the tick must stop (`stop` says why)."""
        if self.out_of_time:
            return None
        runs = list(run_ids)
        try:
            if runs:
                return self.slack.post(message.text, message.blocks, run_id=runs[0], also=runs[1:])
            return self.slack.post(message.text, message.blocks, notices=list(notices))
        except NotDelivered as exc:
            self.defer(exc)
            if exc.only_this_message and len(runs) == 1:  # one malformed message holds back no other
                return exc
            self.stop = exc.reason + (
                "; looked up in the channel before any new post" if exc.maybe_posted else ""
            )
            return None

    def defer(self, exc: NotDelivered) -> None:
        if exc.retry_after is not None:
            self.cursor.not_before = self.clock() + exc.retry_after
