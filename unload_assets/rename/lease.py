"""The lease document a lock object holds (`lock.py`): its owner, since when, until when, and a token.

The token is one holder's own (a fresh one per `FinalKeyLock`): two holders never write the same body,
so an ETag of our lease never comes back once someone else has written the lock. That makes "the lock
object still has the ETag we last wrote" a sound test of still holding it (`FinalKeyLock.check`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def lease_body(owner: str, acquired: str, expires: float, token: str) -> bytes:
    doc = {"owner": owner, "acquired": acquired, "expires": iso(expires), "token": token}
    return json.dumps(doc).encode()


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
