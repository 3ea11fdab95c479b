"""`dagster dev` (webserver + daemon) as a child process, driven by the GraphQL calls the UI makes
(`webserver_client.py`).

Used by `make run` and by the end-to-end tests, so both go through the same path as a person
clicking Materialize: the webserver's GraphQL API, runs launched by the daemon's run launcher,
sensors and schedules evaluated by the daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from unload_assets_local.postgres import free_port
from unload_assets_local.webserver_client import DagsterDevError, WebserverClient


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM the child's process group (started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class DagsterDev(WebserverClient):
    """`dagster dev -w workspace.yaml` run from `project_dir` (where `.env` is read from)."""

    def __init__(
        self,
        *,
        project_dir: Path,
        dagster_home: Path,
        log_file: Path,
        port: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.project_dir = project_dir
        self.dagster_home = dagster_home
        self.port = port or free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", log_file)
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(dagster_home)}
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 180) -> DagsterDev:
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.dagster_home / "dagster.yaml").touch()
        dagster = str(Path(sys.executable).parent / "dagster")
        cmd = [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)]
        handle = self.log_file.open("wb")
        # Its own process group: stop() ends the webserver, the daemon and the code servers together.
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.project_dir,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait("the webserver", self.ping, timeout)
        self._wait("the code location", self.location_loaded, timeout)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc)

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---- internals -----------------------------------------------------------------------
    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self._proc is not None and self._proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise DagsterDevError(
                    f"dagster dev exited ({self._proc.returncode}) before {what} was up:\n{tail}"
                )
            time.sleep(0.5)
        raise DagsterDevError(f"Timed out after {timeout:.0f}s waiting for {what}; see {self.log_file}")
