"""The lease document a lock object holds (`lock.py`): its owner, since when and until when."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def lease_body(owner: str, acquired: str, expires: float) -> bytes:
    return json.dumps({"owner": owner, "acquired": acquired, "expires": iso(expires)}).encode()


def holder_of(body: bytes) -> dict[str, Any]:
    """The lease document in `body`; empty when it is not one (then it counts as expired)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def expiry(doc: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(doc["expires"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0  # an unreadable lock must not block every run forever: treat it as expired
