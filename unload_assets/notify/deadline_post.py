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

from collections.abc import Callable
from typing import TypeVar

from unload_assets.deadline import TargetDay
from unload_assets.notify import messages
from unload_assets.notify.tick import LateNotice, SensorCursor, SlackTick
from unload_assets.resources.slack import NotDelivered, UnloadSlackResource

PER_MESSAGE = 20  # notices per Slack message (their ids ride in its metadata); more make more messages
_Item = TypeVar("_Item")


def late_id(told: TargetDay) -> str:
    return f"late/{told.key}"


def landed_id(told: TargetDay) -> str:
    return f"delivered/{told.key}"


class DeadlineNotifier(SlackTick):
    """One tick's deadline messages; what Slack has is recorded in the cursor as soon as it has it."""

    def __init__(
        self,
        slack: UnloadSlackResource,
        cursor: SensorCursor,
        secrets: tuple[str, ...],
        *,
        clock: Callable[[], float],
        budget_seconds: float | None = None,
    ) -> None:
        super().__init__(slack, cursor, clock=clock, budget_seconds=budget_seconds)
        self.secrets = secrets
        self.told_late: list[str] = []
        self.told_landed: list[str] = []
        self.found = 0  # told by an earlier tick whose outcome was unknown: found in the channel

    def tell(
        self,
        late: list[tuple[TargetDay, messages.Late]],
        landed: list[tuple[TargetDay, messages.Landed]],
    ) -> None:
        if not late and not landed:
            return
        ids = {late_id(t) for t, _ in late} | {landed_id(t) for t, _ in landed}
        # A late message follows its deadline; a "now delivered" follows its late message.
        starts = [t.due for t, _ in late]
        starts += [float(told.ts or told.due) for t, _ in landed if (told := self.cursor.late.get(t.key))]
        found = self.find(ids, oldest=min(starts, default=0.0) - 60)
        if found is None:
            return
        for target_day, _ in late:
            if late_id(target_day) in found:
                self._late_told(target_day, found[late_id(target_day)][1])
                self.found += 1
        for target_day, _ in landed:
            if landed_id(target_day) in found:
                self._landed_told(target_day)
                self.found += 1
        for chunk in _chunks([(t, i) for t, i in late if late_id(t) not in found]):
            message = messages.late_message([item for _, item in chunk], self.secrets)
            ts = self._post_notices(message, [late_id(target_day) for target_day, _ in chunk])
            if ts is None:
                return
            for target_day, _ in chunk:
                self._late_told(target_day, ts)
        for landed_chunk in _chunks([(t, i) for t, i in landed if landed_id(t) not in found]):
            message = messages.landed_message([item for _, item in landed_chunk], self.secrets)
            if self._post_notices(message, [landed_id(target_day) for target_day, _ in landed_chunk]) is None:
                return
            for target_day, _ in landed_chunk:
                self._landed_told(target_day)

    def _post_notices(self, message: messages.SlackMessage, notices: list[str]) -> str | None:
        """The message's Slack ts, or None (and the tick stops)."""
        posted = self.post(message, notices=notices)
        if isinstance(posted, NotDelivered):  # never for notices (only a one-run message is refused alone)
            self.stop = posted.reason
            return None
        return None if posted is None else posted[1]

    def _late_told(self, target_day: TargetDay, ts: str) -> None:
        self.cursor.late[target_day.key] = LateNotice(target_day.due, ts)
        self.told_late.append(target_day.key)

    def _landed_told(self, target_day: TargetDay) -> None:
        self.cursor.late.pop(target_day.key, None)
        self.told_landed.append(target_day.key)


def _chunks(items: list[_Item]) -> list[list[_Item]]:
    return [items[n : n + PER_MESSAGE] for n in range(0, len(items), PER_MESSAGE)]
