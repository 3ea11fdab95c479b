"""What one `UnloadTargets` instance calls everything it creates, in one place.

Every name is scoped by the instance's name, so that two instances (two teams, two clusters) and the host
project's own definitions never collide: resource keys (`<instance>_redshift`, ...), jobs
(`daily_<instance>`), schedules (`daily_<instance>_at_0900`), sensors (`<instance>_success_to_slack`),
the graph and op names inside the assets, and the run tags the Slack sensors write. Asset keys are
`<asset_key_prefix>/<target>` (default `s3/<target>`) and the Redshift tables upstream
`<upstream_key_prefix>/<schema>/<table>` (default `redshift/<schema>/<table>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time

import dagster as dg

DEFAULT_KEY_PREFIX = ("s3",)
DEFAULT_UPSTREAM_PREFIX = ("redshift",)
DEFAULT_POOL = "redshift"  # the Redshift concurrency pool: shared by the instances on one cluster


@dataclass(frozen=True)
class Names:
    instance: str
    key_prefix: tuple[str, ...] = DEFAULT_KEY_PREFIX
    upstream_prefix: tuple[str, ...] = DEFAULT_UPSTREAM_PREFIX

    # Assets

    def asset_key(self, target: str) -> dg.AssetKey:
        return dg.AssetKey([*self.key_prefix, target])

    def output_name(self, target: str) -> str:
        """The output of the rename op (and of the graph) that is the asset of `target`."""
        return self.asset_key(target).to_python_identifier()

    def upstream_key(self, schema: str, table: str) -> dg.AssetKey:
        return dg.AssetKey([*self.upstream_prefix, schema, table])

    def target_of(self, key: dg.AssetKey | None) -> str | None:
        """The target whose asset `key` is, if it has this instance's shape (prefix + one name)."""
        if key is None or len(key.path) != len(self.key_prefix) + 1:
            return None
        return key.path[-1] if tuple(key.path[:-1]) == self.key_prefix else None

    # Resources

    @property
    def redshift(self) -> str:
        return f"{self.instance}_redshift"

    @property
    def s3(self) -> str:
        return f"{self.instance}_s3"

    @property
    def settings(self) -> str:
        return f"{self.instance}_settings"

    @property
    def slack(self) -> str:
        return f"{self.instance}_slack"

    @property
    def handoff(self) -> str:
        """The IO manager that carries the unload op's output to the rename op, through S3."""
        return f"{self.instance}_handoff_io_manager"

    # Graphs and ops of one group of targets (`daily`, `unpartitioned`, `daily_from_2026_01_01`, `daily_2`)

    def graph(self, group: str) -> str:
        return f"{self.instance}_{group}"

    def unload_op(self, group: str) -> str:
        return f"unload_{self.instance}_{group}"

    def rename_op(self, group: str) -> str:
        return f"rename_{self.instance}_{group}"

    # Jobs, schedules, sensors

    def daily_job(self, start: date | None = None) -> str:
        """`daily_<instance>`; `daily_<instance>_from_<start>` when daily targets start on different days."""
        return f"daily_{self.instance}" + (f"_from_{start:%Y_%m_%d}" if start else "")

    @property
    def unpartitioned_job(self) -> str:
        return f"unpartitioned_{self.instance}"

    def owns_job(self, job_name: str) -> bool:
        daily = self.daily_job()
        return job_name in (daily, self.unpartitioned_job) or job_name.startswith(f"{daily}_from_")

    @staticmethod
    def schedule(job_name: str, run_at: time) -> str:
        return f"{job_name}_at_{run_at:%H%M}"

    @property
    def success_sensor(self) -> str:
        return f"{self.instance}_success_to_slack"

    @property
    def failure_sensor(self) -> str:
        return f"{self.instance}_failure_to_slack"

    @property
    def deadline_sensor(self) -> str:
        return f"{self.instance}_deadline_to_slack"

    def tag(self, what: str) -> str:
        """A run tag this instance's sensors write: another instance's announcement is not ours."""
        return f"unload_assets/{self.instance}/{what}"
