"""Redshift misbehaving on purpose, for tests: a dropped connection or a stalled UNLOAD.

A fault fires at the worst moment for the client: UNLOAD has written its data files and not yet its
manifest, so a careless client would find partial output.

- `drop`: the connection closes without an answer, as when the cluster restarts or a NAT forgets
  the flow. The client's session ends; its transaction, if any, is rolled back.
- `stall`: the UNLOAD waits `seconds` before going on. On its own that is a slow cluster; when the
  session's `statement_timeout` is shorter, the UNLOAD is cancelled as Redshift cancels it, with
  SQLSTATE 57014 and "Query (<id>) canceled on user's request". With `until_active=n` it waits only
  until n UNLOADs are in flight at once (at most `seconds`), then `grace` seconds more: a test of a
  concurrency cap then sees the cap reached by a condition, not by luck with timing.

With `leave_files` (the default) the data files already written stay in S3, as a real cluster may
leave them; otherwise they are deleted, as the emulator does for every other failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Action = Literal["drop", "stall"]


class ConnectionDropped(ConnectionError):
    """Raised inside the UNLOAD to make the proxy close the client's connection without an answer."""


@dataclass
class UnloadFault:
    action: Action
    seconds: float
    to_contains: str  # only UNLOADs whose TO location contains this
    times: int  # how many UNLOADs it hits before it retires
    leave_files: bool
    on_fire: Callable[[UnloadFault], None] | None  # called (in a worker thread) just before it acts
    until_active: int = 0  # stall: only until this many UNLOADs are in flight (0: the whole `seconds`)
    grace: float = 0.0  # stall with until_active: held this much longer once the count is reached
    fired: int = 0

    @property
    def operation(self) -> str:
        return f"UNLOAD ({self.action})"


class UnloadFaults:
    """The faults a test has asked for; the emulator takes one per matching UNLOAD (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[UnloadFault] = []
        self.total_injected = 0

    def inject(
        self,
        action: Action,
        *,
        seconds: float = 0.0,
        to_contains: str = "",
        times: int = 1,
        leave_files: bool = True,
        on_fire: Callable[[UnloadFault], None] | None = None,
        until_active: int = 0,
        grace: float = 0.0,
    ) -> UnloadFault:
        if action not in ("drop", "stall"):
            raise ValueError(f"unknown UNLOAD fault {action!r}: use 'drop' or 'stall'")
        fault = UnloadFault(action, seconds, to_contains, times, leave_files, on_fire, until_active, grace)
        with self._lock:
            self._pending.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, location: str) -> UnloadFault | None:
        """The first pending fault for an UNLOAD to `location`, counted as fired."""
        with self._lock:
            for fault in self._pending:
                if fault.to_contains in location:
                    fault.fired += 1
                    self.total_injected += 1
                    if fault.fired >= fault.times:
                        self._pending.remove(fault)
                    return fault
        return None
