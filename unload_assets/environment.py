"""The process environment, read here and nowhere else in the package.

An instance's settings are its component attributes (component.py): `{{ env.VAR }}` there is Dagster's
template, or a variable kept for run time (configuration.py). What is left for this module: whether a
variable is set and its value (for those kept variables, and to scrub secrets from messages), where a
value came from (the shell or a `.env` file), and the two process-wide switches that are not per instance.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

TARGETS_FILE = "UNLOAD_TARGETS_FILE"  # this repository's defs.yaml reads its catalogue's path from it
CELERY_BROKER = "UNLOAD_CELERY_BROKER_URL"  # set: steps run on Celery workers (the project's executor)
STRICT = "UNLOAD_STRICT"  # set to 1/true: any catalogue problem fails the load (CI)


def value_of(name: str) -> str | None:
    return os.environ.get(name) or None


def is_set(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


def strict() -> bool:
    """UNLOAD_STRICT: any catalogue problem fails the load, in every instance."""
    return os.environ.get(STRICT, "").strip().lower() in ("1", "true", "yes")


def celery_broker_set() -> bool:
    return is_set(CELERY_BROKER)


def origin_of(name: str) -> str:
    """Where `name`'s value comes from, as people should be told: the shell, or a `.env` file.

    Dagster loads the `.env` of the folder it runs in *over* the shell's environment (`dagster dev`,
    `dagster definitions validate`); the value it put there is said to come from that file, and a shell
    value it replaced is named too (read from the process's own start, where the OS keeps it)."""
    value = os.environ.get(name)
    from_file = _dotenv().get(name)
    if from_file is not None and from_file == value:
        shell = _initial_environment().get(name)
        replaced = f"; it replaced the shell's {shell!r}" if shell is not None and shell != value else ""
        return f"{name} in {Path.cwd() / '.env'} (Dagster loads .env over the shell{replaced})"
    return f"{name} from the environment (the shell)"


def _dotenv() -> dict[str, str | None]:
    path = Path.cwd() / ".env"
    return dict(dotenv_values(path)) if path.is_file() else {}


def _initial_environment() -> dict[str, str]:
    """The environment this process started with (Linux keeps it in /proc), before any .env was loaded."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}
