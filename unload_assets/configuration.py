"""One `UnloadTargets` instance's settings, resolved from its attributes: what the assembly builds from.

Values written `{{ env.VAR }}` in the run-time attributes (the connection, the bucket, the IAM role, the
secrets) arrive here as `RunTime` and become `dagster.EnvVar`s: Dagster reads them when a run or a sensor
needs them, never when the definitions load. A required one (host, database, bucket) is always kept that
way; an optional one (a password, keys, the Slack token, a port) counts as not given when the code
location loads without it, so that a deployment that does not use it needs no dummy value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

import dagster as dg

from unload_assets import environment
from unload_assets.names import Names
from unload_assets.resources import RedshiftUnloadResource, UnloadSettings
from unload_assets.resources.s3 import UnloadS3Resource
from unload_assets.resources.slack import UnloadSlackResource

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_TIMEZONE = "America/Los_Angeles"  # what the old `00 16 * * *` UTC cron meant, in summer
DEFAULT_WEBSERVER_URL = "http://localhost:3000"
DEFAULT_SENSOR_INTERVAL_SECONDS = 30
# Targets per pair of ops (one subsettable multi-asset each). A run of one target plans and snapshots
# only its own batch's outputs and checks, so clicking Materialize on one target of 1000 costs about
# what a 50-target catalogue costs; a morning of 1000 runs 20 unload and 20 rename steps, whose renames
# overlap the next batch's UNLOADs (benchmarks/bench_morning.py, docs/benchmarks.md).
DEFAULT_BATCH_SIZE = 50
# A year's backfill is 13 runs, each paying a run's start-up once for 30 days.
DEFAULT_BACKFILL_DAYS_PER_RUN = 30
DEFAULT_STAGING_PREFIX = "_staging"

_ENV_REFERENCE = re.compile(
    r"""^\s*\{\{\s*env(?:\.(?P<dot>[A-Za-z_]\w*)|\(\s*(?P<q>['"])(?P<call>[A-Za-z_]\w*)(?P=q)"""
    r"""\s*(?:,\s*(?P<dq>['"])(?P<default>.*?)(?P=dq)\s*)?\))\s*\}\}\s*$"""
)


def env_reference(text: str) -> tuple[str, str | None] | None:
    """`("VAR", default)` when `text` is exactly `{{ env.VAR }}` or `{{ env('VAR'[, 'default']) }}`."""
    match = _ENV_REFERENCE.match(text)
    if match is None:
        return None
    return (match["dot"] or match["call"], match["default"])


@dataclass(frozen=True)
class RunTime:
    """An attribute written `{{ env.VAR }}` that is read when a run or a sensor needs it."""

    variable: str
    default: str | None = None

    def required(self) -> dg.EnvVar | str:
        """Always the variable (Dagster names it if it is missing at run time), or its default."""
        if self.default is not None and not environment.is_set(self.variable):
            return self.default
        return dg.EnvVar(self.variable)

    def optional(self) -> dg.EnvVar | str | None:
        """The variable when it is set as the definitions load, else its default (or None)."""
        return dg.EnvVar(self.variable) if environment.is_set(self.variable) else self.default


@dataclass(frozen=True)
class CatalogueChoice:
    """Which catalogue an instance reads, and why that one (for the line `make run` and validation print)."""

    path: Path | None = None  # a file; None: inline
    inline_defaults: Any = None
    inline_targets: Any = None
    defs_yaml: Path | None = None
    origin: str = "the catalogue packaged with unload_assets"


@dataclass(frozen=True)
class Configuration:
    """Everything one instance needs to build its definitions."""

    names: Names
    catalogue: CatalogueChoice
    group_name: str
    run_at: time
    timezone: str
    pool: str
    redshift: RedshiftUnloadResource
    storage: UnloadSettings
    s3: UnloadS3Resource
    slack: UnloadSlackResource | None
    database: str | None  # for `dagster/table_name` when known as the definitions load
    target_defaults: Mapping[str, Any] = field(default_factory=dict)  # owners, tags, kms_key_id
    webserver_url: str = DEFAULT_WEBSERVER_URL
    sensor_interval_seconds: int = DEFAULT_SENSOR_INTERVAL_SECONDS
    batch_size: int = DEFAULT_BATCH_SIZE  # 0: every target of a partitioning in one pair of ops
    backfill_days_per_run: int = DEFAULT_BACKFILL_DAYS_PER_RUN  # a backfill run's days at most
    strict: bool = False
    executor: bool = False
    declare_upstream_tables: bool = True
    secret_variables: tuple[str, ...] = ()  # the variables that hold this instance's secrets

    def secret_values(self, *known: str | None) -> tuple[str, ...]:
        """`known` secrets and the values of this instance's secret variables, for scrubbing."""
        return tuple(v for v in (*known, *map(environment.value_of, self.secret_variables)) if v)

    def run_link(self, run_id: str) -> str:
        return f"{self.webserver_url.rstrip('/')}/runs/{run_id}"

    def backfill_link(self, backfill_id: str) -> str:
        """The backfill's page in the UI: its days, runs and the "re-execute" of what failed."""
        return f"{self.webserver_url.rstrip('/')}/runs/b/{backfill_id}?tab=partitions"
