"""What the deadline sensor keeps between ticks, in its cursor (where Dagster keeps sensor state)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import NamedTuple


class Told(NamedTuple):
    """A target-day told late: its deadline (Unix time) and the late message's Slack ts."""

    due: float
    ts: str


@dataclass
class DeadlineCursor:
    """`since`: every target-day whose deadline passed before it was checked, and told if late (None:
    the first tick). `late`: the target-days told late, awaiting their "now delivered", by
    "<target>/<day>".
    `not_before`: a long Retry-After from Slack, honoured across ticks."""

    since: float | None = None
    late: dict[str, Told] = field(default_factory=dict)
    not_before: float = 0.0

    @classmethod
    def parse(cls, raw: str | None) -> DeadlineCursor:
        try:
            data = json.loads(raw or "{}")
            since = data.get("since")
            late = {
                str(key): Told(float(due), str(ts)) for key, (due, ts) in dict(data.get("late") or {}).items()
            }
            return cls(
                since=float(since) if since is not None else None,
                late=late,
                not_before=float(data.get("not_before", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            # Unreadable: the first tick's look back, and the channel's history, keep repeats out.
            return cls()

    def dump(self) -> str:
        data = {"since": self.since, "late": self.late, "not_before": self.not_before}
        return json.dumps(data, sort_keys=True)
