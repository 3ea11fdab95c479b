"""What the recovery tests (issue 28) share: faults at chosen moments, and the count of what a person did.

- `PausableProxy`: a loopback TCP proxy the daemon reaches the code server through. Paused, it holds
  whatever the daemon sends; `drop()` then closes every connection without delivering it: a daemon
  killed while its StartRun request is in flight, deterministically (the run stays STARTING).
- `run_worker_pid` / `step_started`: the run worker's pid (Dagster's own "Started process for run (pid:
  N)" event) and whether a step has started, read from the instance, for a SIGKILL mid-step.
- `ManualActions`: the webserver client with every operator action (terminate, re-execute) counted. A
  recovery test does everything through it and asserts the count is 0.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from typing import Any

import dagster as dg

_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


class PausableProxy:
    """Forwards loopback TCP connections to `target_port`; `pause()` holds what clients send, `drop()`
    closes every open connection without delivering what was held, `resume()` lets traffic flow."""

    def __init__(self) -> None:
        self.target_port = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._pending: dict[socket.socket, bytes] = {}  # what a connection received while paused
        self.held = 0  # bytes received while paused and never delivered
        self._stopped = False

    def start(self, target_port: int) -> PausableProxy:
        self.target_port = target_port
        threading.Thread(target=self._accept, daemon=True, name="pausable-proxy").start()
        return self

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def drop(self) -> None:
        """Close every connection open now; what they were holding is never delivered."""
        with self._lock:
            doomed, self._open = self._open, []
            self.held += sum(len(self._pending.pop(conn, b"")) for conn in doomed)
        for conn in doomed:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        self.drop()
        self._flowing.set()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self._pending[src] = data
                while not self._flowing.wait(0.1):
                    if src not in self._open:  # dropped while holding: never delivered
                        return
                with self._lock:
                    if src not in self._open:
                        return
                    del self._pending[src]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (src, dst):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def daemon_evaluated_sensors(instance: dg.DagsterInstance, names: tuple[str, ...], since: float) -> bool:
    """Whether the daemon has ticked each of these sensors since `since` (a unix time): it has loaded
    the code location and asked the code server something, so a pause of its link now finds it working."""
    states = [s for s in instance.all_instigator_state() if s.name in names]
    return len(states) == len(names) and all(
        instance.get_ticks(s.instigator_origin_id, s.selector_id, after=since) for s in states
    )


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's worker process, from Dagster's engine event (the last one: a resumed run
    has several)."""
    found = None
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
        match = _PID.search(record.event_log_entry.message or "")
        if match:
            found = int(match.group(1))
    return found


def step_started(instance: dg.DagsterInstance, run_id: str, step_contains: str) -> bool:
    """Whether a step of the run whose key contains `step_contains` has started."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return any(step_contains in (r.event_log_entry.step_key or "") for r in records)


def celery_unload_in_flight(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str] | None:
    """(step key, Celery worker) of an unload step a worker is executing now with an UNLOAD in flight,
    from the celery executor's "Executing steps ... in celery worker" events."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    finished = {
        r.event_log_entry.step_key
        for kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
        for r in instance.get_records_for_run(run_id, of_type=kind).records
    }
    for record in reversed(records):
        entry = record.event_log_entry
        step = entry.step_key or ""
        if (
            "Executing steps" in entry.message
            and step.split(".")[-1].startswith("unload_")
            and step not in finished
        ):
            event = entry.dagster_event
            metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
            worker = metadata.get("Celery worker")
            return (step, str(worker.value)) if worker is not None else None
    return None


def celery_executions(instance: dg.DagsterInstance, run_id: str, step: str) -> list[str]:
    """The Celery workers that started executing `step`, in order."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    workers = []
    for record in records:
        entry = record.event_log_entry
        if entry.step_key == step and "Executing steps" in entry.message:
            workers.append(
                re.sub(r"@.*", "", str(entry.dagster_event.engine_event_data.metadata["Celery worker"].value))
            )  # type: ignore[union-attr]
    return workers


class ManualActions:
    """The webserver client, with every action an operator would take counted (`count`, `taken`)."""

    COUNTED = ("terminate", "reexecute")

    def __init__(self, client: Any) -> None:
        self._client = client
        self.taken: list[str] = []

    @property
    def count(self) -> int:
        return len(self.taken)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self.COUNTED:
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.taken.append(f"{name}{args}")
            return attribute(*args, **kwargs)

        return counted
