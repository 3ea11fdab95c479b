"""Posting one tick's deadline messages ("late", "now delivered"), each exactly once.

No run carries these messages' state, and a sensor's cursor is saved only when its tick ends: a tick that
dies after a post (a daemon restart, the 60 s sensor timeout) leaves no trace of it in Dagster. So each
message carries the ids of the notices it tells in its Slack metadata (`late/<target>/<day>`,
`delivered/<target>/<day>`), and before any post the tick reads the channel's history since the
earliest deadline (or late message) concerned: a notice found there is recorded as told, not posted
again. Without history access (no `channels:history` scope) the tick posts and says a duplicate is
possible: a repeated alert is better than a missing one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from unload_assets import late_messages as lm
from unload_assets.deadline import TargetDay
from unload_assets.messages import SlackMessage
from unload_assets.orchestration.deadline_cursor import DeadlineCursor, Told
from unload_assets.resources.slack import NotDelivered, UnloadSlackResource

PER_MESSAGE = 20  # notices per Slack message (their ids ride in its metadata); more make more messages
_Item = TypeVar("_Item")


def late_id(told: TargetDay) -> str:
    return f"late/{told.key}"


def landed_id(told: TargetDay) -> str:
    return f"delivered/{told.key}"


class Telling:
    """One tick's deadline messages; what Slack has is recorded in the cursor as soon as it has it."""

    def __init__(
        self,
        slack: UnloadSlackResource,
        cursor: DeadlineCursor,
        secrets: tuple[str, ...],
        *,
        clock: Callable[[], float],
        budget_seconds: float,
    ) -> None:
        self.slack, self.cursor, self.secrets, self.clock = slack, cursor, secrets, clock
        self.deadline = time.monotonic() + budget_seconds
        self.told_late: list[str] = []
        self.told_landed: list[str] = []
        self.found = 0  # told by an earlier tick whose outcome was unknown: found in the channel
        self.stop: str | None = None
        self.unread: str | None = None  # why the channel's history could not be read (posted anyway)

    def tell(self, late: list[tuple[TargetDay, lm.Late]], landed: list[tuple[TargetDay, lm.Landed]]) -> None:
        if not late and not landed:
            return
        found = self._already_told(late, landed)
        if found is None:
            return
        for told, _ in late:
            if late_id(told) in found:
                self._late_told(told, found[late_id(told)][1])
                self.found += 1
        for told, _ in landed:
            if landed_id(told) in found:
                self._landed_told(told)
                self.found += 1
        for chunk in _chunks([(t, i) for t, i in late if late_id(t) not in found]):
            message = lm.late_message([item for _, item in chunk], self.secrets)
            ts = self._post(message, [late_id(told) for told, _ in chunk])
            if ts is None:
                return
            for told, _ in chunk:
                self._late_told(told, ts)
        for landed_chunk in _chunks([(t, i) for t, i in landed if landed_id(t) not in found]):
            message = lm.landed_message([item for _, item in landed_chunk], self.secrets)
            if self._post(message, [landed_id(told) for told, _ in landed_chunk]) is None:
                return
            for told, _ in landed_chunk:
                self._landed_told(told)

    def _already_told(
        self, late: list[tuple[TargetDay, lm.Late]], landed: list[tuple[TargetDay, lm.Landed]]
    ) -> dict[str, tuple[str, str]] | None:
        """The notices already in the channel (None: Slack cannot say now; the tick stops)."""
        ids = {late_id(t) for t, _ in late} | {landed_id(t) for t, _ in landed}
        # A late message follows its deadline; a "now delivered" follows its late message.
        starts = [t.due for t, _ in late]
        starts += [float(told.ts or told.due) for t, _ in landed if (told := self.cursor.late.get(t.key))]
        try:
            return self.slack.find_posted(ids, oldest=min(starts, default=0.0) - 60)
        except NotDelivered as exc:
            self._defer(exc)
            if not exc.cannot_read:
                self.stop = f"{exc.reason}; looked up again next tick before any post"
                return None
            self.unread = exc.reason
            return {}

    def _post(self, message: SlackMessage, notices: list[str]) -> str | None:
        """The message's Slack ts, or None (and the tick stops)."""
        if time.monotonic() > self.deadline:
            self.stop = "time budget of this tick used up"
            return None
        try:
            return self.slack.post(message.text, message.blocks, notices=notices)[1]
        except NotDelivered as exc:
            self._defer(exc)
            self.stop = exc.reason + (
                "; looked up in the channel before any new post" if exc.maybe_posted else ""
            )
            return None

    def _defer(self, exc: NotDelivered) -> None:
        if exc.retry_after is not None:
            self.cursor.not_before = self.clock() + exc.retry_after

    def _late_told(self, told: TargetDay, ts: str) -> None:
        self.cursor.late[told.key] = Told(told.due, ts)
        self.told_late.append(told.key)

    def _landed_told(self, told: TargetDay) -> None:
        self.cursor.late.pop(told.key, None)
        self.told_landed.append(told.key)


def _chunks(items: list[_Item]) -> list[list[_Item]]:
    return [items[n : n + PER_MESSAGE] for n in range(0, len(items), PER_MESSAGE)]
