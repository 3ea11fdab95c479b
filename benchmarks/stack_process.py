"""The local stack in a process group of its own, for benchmarks that must not share its CPU or GIL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

BIN = Path(sys.executable).parent


def start_stack(
    workdir: Path, rows: int, days: int | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """`unload-assets-local up` under `workdir`, seeded with `rows` sales (over `days` days ending
    yesterday: the stack's 30 unless given); returns it and its variables."""
    env_file = workdir / ".env"
    proc = subprocess.Popen(
        [
            str(BIN / "unload-assets-local"),
            "up",
            "--dir",
            str(workdir / "stack"),
            "--env-file",
            str(env_file),
            "--rows",
            str(rows),
            "--redshift-port",
            "0",
            *(["--days", str(days)] if days else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"Ready."):
            return proc, {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    raise RuntimeError("the local stack did not start")


def stop_stack(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
