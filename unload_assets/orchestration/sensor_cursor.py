"""What the Slack sensors keep between ticks, in the sensor cursor (where Dagster keeps sensor state)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Cursor:
    """`untagged`: runs Slack accepted whose tag write failed (announced: retag, never re-post).
    `not_before`: a long Retry-After from Slack, honoured across ticks instead of hammering it.
    `since`: the watermark; every run that ended before it is announced (None: the first tick).
    `notices`: the catalogue problems told (the failure sensor's; see catalogue_notices.py)."""

    untagged: dict[str, str] = field(default_factory=dict)
    not_before: float = 0.0
    since: float | None = None
    notices: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        try:
            data = json.loads(raw or "{}")
            since = data.get("since")
            return cls(
                untagged=dict(data.get("untagged", {})),
                not_before=float(data.get("not_before", 0)),
                since=float(since) if since is not None else None,
                notices=[str(notice) for notice in data.get("notices") or []],
            )
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor only loses the retag list; the run tags still hold

    def dump(self) -> str:
        data = {"untagged": self.untagged, "not_before": self.not_before, "since": self.since}
        if self.notices:
            data["notices"] = self.notices
        return json.dumps(data, sort_keys=True)
