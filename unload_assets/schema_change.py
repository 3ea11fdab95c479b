"""A delivery's columns against the previous delivery's: the columns added, removed, retyped or moved.

Pure: no I/O, no Dagster. Columns are `(name, type)` pairs, typed as Redshift names the types in the
UNLOAD manifest (MANIFEST VERBOSE): `character varying(60)`, `numeric(10,2)`. A change of length or
precision is a change of type: a fixed-width or strictly typed import breaks on it as on any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Column = tuple[str, str]  # (name, type)
_LISTED = 10  # columns named per kind in one line; the metadata's JSON keeps them all


@dataclass(frozen=True)
class SchemaChange:
    """What changed since `since` (the previous delivery: its day, or its time when unpartitioned)."""

    since: str
    added: tuple[Column, ...] = ()
    removed: tuple[Column, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()  # (name, type before, type now)
    reordered: tuple[str, ...] = ()  # the columns both deliveries have, in their new order, if it moved
    accepted: bool = False  # `on_schema_change: fail`, delivered because a person accepted the change

    def columns(self) -> str:
        """`added discount (numeric(10,2)); removed region; retyped amount numeric(10,2) -> numeric(12,2)`"""
        parts = [
            ("added", [f"{name} ({kind})" for name, kind in self.added]),
            ("removed", [name for name, _ in self.removed]),
            ("retyped", [f"{name} {before} -> {now}" for name, before, now in self.retyped]),
            ("reordered", [", ".join(self.reordered)] if self.reordered else []),
        ]
        return "; ".join(f"{kind} {_listed(items)}" for kind, items in parts if items)

    def summary(self) -> str:
        """One line for the log, the metadata and Slack."""
        accepted = " (accepted)" if self.accepted else ""
        return f"schema changed since the delivery of {self.since}{accepted}: {self.columns()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "added": [{"name": n, "type": t} for n, t in self.added],
            "removed": [{"name": n, "type": t} for n, t in self.removed],
            "retyped": [{"name": n, "from": b, "to": a} for n, b, a in self.retyped],
            "reordered": list(self.reordered),
            "accepted": self.accepted,
        }

    @classmethod
    def from_json(cls, value: Any) -> SchemaChange | None:
        """The change `to_json` wrote; None for anything else (a key written by hand, say)."""
        if not isinstance(value, Mapping) or not isinstance(value.get("since"), str):
            return None

        def rows(key: str) -> list[Mapping[str, Any]]:
            found = value.get(key)
            return [row for row in found if isinstance(row, Mapping)] if isinstance(found, list) else []

        reordered = value.get("reordered")
        return cls(
            since=value["since"],
            added=tuple((str(r.get("name", "")), str(r.get("type", ""))) for r in rows("added")),
            removed=tuple((str(r.get("name", "")), str(r.get("type", ""))) for r in rows("removed")),
            retyped=tuple(
                (str(r.get("name", "")), str(r.get("from", "")), str(r.get("to", "")))
                for r in rows("retyped")
            ),
            reordered=tuple(str(n) for n in reordered) if isinstance(reordered, list) else (),
            accepted=value.get("accepted") is True,
        )


def compare(previous: Sequence[Column], current: Sequence[Column], *, since: str) -> SchemaChange | None:
    """What changed from `previous` to `current` (None when nothing did). A name given twice (a SELECT
    may do that) is told apart by its occurrence: `amount`, then `amount#2`."""
    before, now = dict(_named(previous)), dict(_named(current))
    added = tuple((name, kind) for name, kind in now.items() if name not in before)
    removed = tuple((name, kind) for name, kind in before.items() if name not in now)
    retyped = tuple(
        (name, before[name], kind) for name, kind in now.items() if before.get(name, kind) != kind
    )
    kept_before = [name for name in before if name in now]
    kept_now = [name for name in now if name in before]
    reordered = tuple(kept_now) if kept_now != kept_before else ()
    if not (added or removed or retyped or reordered):
        return None
    return SchemaChange(since, added, removed, retyped, reordered)


def manifest_columns(schema: Mapping[str, Any] | None) -> tuple[Column, ...] | None:
    """The columns of an UNLOAD manifest's `schema` (MANIFEST VERBOSE), typed as Redshift names them;
    None without one, or when it is not what UNLOAD writes."""
    elements = (schema or {}).get("elements")
    if not isinstance(elements, list) or not elements:
        return None
    columns = []
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get("name"), str):
            return None
        found = element.get("type")
        kind: dict[str, Any] = found if isinstance(found, dict) else {}
        name = str(kind.get("base") or "unknown")
        if "max_length" in kind:
            name += f"({kind['max_length']})"
        elif "precision" in kind:
            name += f"({kind['precision']},{kind.get('scale', 0)})"
        columns.append((element["name"], name))
    return tuple(columns)


def _named(columns: Sequence[Column]) -> list[Column]:
    seen: dict[str, int] = {}
    named = []
    for name, kind in columns:
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}#{seen[name]}", kind))
    return named


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return ", ".join(items[:_LISTED]) + more
