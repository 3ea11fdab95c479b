"""Every environment variable the code location reads, read here and nowhere else.

The rest of the package takes values as arguments; `definitions.py` asks this module for them when Dagster
loads the code location. Each reader checks its variable and raises a ValueError naming it. Secrets are
never read here: they are wired as `dagster.EnvVar`s and resolved by Dagster at run time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dagster import EnvVar

from unload_assets.resources.redshift import RedshiftUnloadResource
from unload_assets.resources.redshift_auth import AUTH_MODES, MAX_DURATION, MIN_DURATION

TARGETS_FILE = "UNLOAD_TARGETS_FILE"  # the catalogue; default: the one packaged with unload_assets
CELERY_BROKER = "UNLOAD_CELERY_BROKER_URL"  # set: steps run on Celery workers
DEFAULT_TIMEZONE = "America/Los_Angeles"
DEFAULT_SENSOR_INTERVAL_SECONDS = 30
# Variables whose values are secrets: scrubbed from every message the sensors send.
SECRET_VARIABLES = (
    "SLACK_BOT_TOKEN",
    "REDSHIFT_PASSWORD",
    "UNLOAD_ACCESS_KEY_ID",
    "UNLOAD_SECRET_ACCESS_KEY",
    "UNLOAD_SESSION_TOKEN",
)


def _get(name: str, default: str = "") -> str:
    return (os.environ.get(name) or default).strip()


def _whole_number(name: str, default: int, low: int, high: int | None = None) -> int:
    """The variable `name` as a whole number from `low` to `high` (`default` when unset)."""
    raw = _get(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bounds = f" from {low} to {high}" if high is not None else ""
        raise ValueError(f"{name} must be a whole number{bounds}, not {raw!r}")
    return int(raw)


def catalogue_file() -> str | None:
    return _get(TARGETS_FILE) or None


def timezone() -> str:
    """UNLOAD_TIMEZONE: where 09:00 is, and which day is "yesterday" (America/Los_Angeles)."""
    return _get("UNLOAD_TIMEZONE") or DEFAULT_TIMEZONE


def sensor_interval_seconds() -> int:
    """UNLOAD_SENSOR_INTERVAL_SECONDS: how often the Slack sensors look for finished runs (30 s)."""
    return _whole_number("UNLOAD_SENSOR_INTERVAL_SECONDS", DEFAULT_SENSOR_INTERVAL_SECONDS, 5, 3600)


def max_concurrent_unloads() -> int:
    """UNLOAD_MAX_CONCURRENT: UNLOADs one run's unload step runs at once (4)."""
    return _whole_number("UNLOAD_MAX_CONCURRENT", 4, 1, 50)


def batch_size() -> int:
    """UNLOAD_BATCH_SIZE: targets per pair of ops (0, the default: all targets of a partitioning).

    Smaller batches give a distributed executor (Celery, Kubernetes) steps to spread over machines."""
    return _whole_number("UNLOAD_BATCH_SIZE", 0, 0)


def s3_endpoint_url() -> str | None:
    return _get("AWS_ENDPOINT_URL_S3") or None


def staging_prefix() -> str:
    return os.environ.get("UNLOAD_STAGING_PREFIX", "_staging")


def iam_role() -> str | None:
    return _get("UNLOAD_IAM_ROLE") or None


def redshift_database() -> str | None:
    return _get("REDSHIFT_DATABASE") or None


def slack_channel() -> str:
    return os.environ.get("SLACK_CHANNEL", "")


def slack_api_url() -> str:
    return os.environ.get("SLACK_API_URL", "")


def celery_broker_set() -> bool:
    return bool(_get(CELERY_BROKER))


def webserver_url() -> str:
    """DAGSTER_WEBSERVER_URL: where the links in Slack messages point (http://localhost:3000)."""
    return (_get("DAGSTER_WEBSERVER_URL") or "http://localhost:3000").rstrip("/")


def optional_secret(name: str) -> EnvVar | None:
    """`EnvVar(name)` when the variable is set (key-based UNLOAD authorization is opt-in), else None."""
    return EnvVar(name) if os.environ.get(name) else None


def secret_values(*known: str | None) -> tuple[str, ...]:
    """`known` secrets (a resource's token, say) and the values of the secret variables that are set,
    for scrubbing."""
    return tuple(v for v in (*known, *map(os.environ.get, SECRET_VARIABLES)) if v)


def redshift_resource() -> RedshiftUnloadResource:
    return redshift_from_env(os.environ)


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def redshift_from_env(env: Mapping[str, str]) -> RedshiftUnloadResource:
    """The resource as the environment describes it, every variable checked at load: a mistake names the
    variable before any run starts. Secrets stay `EnvVar`s, read at run time."""

    def get(name: str, default: str = "") -> str:
        return (env.get(name) or default).strip()

    auth = get("REDSHIFT_AUTH", "password")
    if auth not in AUTH_MODES:
        raise ValueError(f"REDSHIFT_AUTH must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
    sslmode = get("REDSHIFT_SSLMODE", "require")
    if sslmode not in _SSLMODES:
        raise ValueError(f"REDSHIFT_SSLMODE must be one of {', '.join(_SSLMODES)}, not {sslmode!r}")
    sslrootcert = get("REDSHIFT_SSLROOTCERT") or None
    if sslrootcert and not Path(sslrootcert).is_file():
        raise ValueError(f"REDSHIFT_SSLROOTCERT names no readable file: {sslrootcert}")
    duration = get("REDSHIFT_CREDENTIALS_DURATION_SECONDS", str(MIN_DURATION))
    if not duration.isdigit() or not MIN_DURATION <= int(duration) <= MAX_DURATION:
        raise ValueError(
            f"REDSHIFT_CREDENTIALS_DURATION_SECONDS must be a whole number from {MIN_DURATION} to "
            f"{MAX_DURATION}, not {duration!r}"
        )
    auto_create, iam_identity = (
        get(name, "false").lower() for name in ("REDSHIFT_AUTO_CREATE", "REDSHIFT_IAM_IDENTITY")
    )
    for name, flag in (("REDSHIFT_AUTO_CREATE", auto_create), ("REDSHIFT_IAM_IDENTITY", iam_identity)):
        if flag not in ("true", "false"):
            raise ValueError(f"{name} must be true or false, not {flag!r}")
    required = {"password": ("REDSHIFT_USER", "REDSHIFT_PASSWORD"), "iam": ("REDSHIFT_CLUSTER_IDENTIFIER",),
                "serverless": ("REDSHIFT_WORKGROUP",)}[auth]  # fmt: skip
    required += ("REDSHIFT_HOST", "REDSHIFT_DATABASE")
    if auth == "iam" and iam_identity == "false" and not (get("REDSHIFT_DB_USER") or get("REDSHIFT_USER")):
        required += ("REDSHIFT_DB_USER",)
    missing = [name for name in required if not get(name)]
    if missing:
        raise ValueError(f"REDSHIFT_AUTH={auth} needs {', '.join(missing)} (unset or empty)")
    timeout = get("REDSHIFT_STATEMENT_TIMEOUT_SECONDS")
    if timeout and (not timeout.isdigit() or int(timeout) == 0):
        raise ValueError(
            f"REDSHIFT_STATEMENT_TIMEOUT_SECONDS must be a whole number of seconds above 0 (or unset), "
            f"not {timeout!r}"
        )
    port = get("REDSHIFT_PORT", "5439")
    if not port.isdigit():
        raise ValueError(f"REDSHIFT_PORT must be a port number, not {port!r}")
    return RedshiftUnloadResource(
        host=EnvVar("REDSHIFT_HOST"),
        port=int(port),
        user=EnvVar("REDSHIFT_USER") if get("REDSHIFT_USER") else None,
        password=EnvVar("REDSHIFT_PASSWORD") if auth == "password" else None,
        database=EnvVar("REDSHIFT_DATABASE"),
        sslmode=sslmode,
        sslrootcert=sslrootcert,
        statement_timeout_seconds=int(timeout) if timeout else None,
        auth=auth,
        cluster_identifier=get("REDSHIFT_CLUSTER_IDENTIFIER") or None,
        db_user=get("REDSHIFT_DB_USER") or None,
        db_groups=[g.strip() for g in get("REDSHIFT_DB_GROUPS").split(",") if g.strip()],
        auto_create=auto_create == "true",
        iam_identity=iam_identity == "true",
        workgroup=get("REDSHIFT_WORKGROUP") or None,
        credentials_duration_seconds=int(duration),
    )
