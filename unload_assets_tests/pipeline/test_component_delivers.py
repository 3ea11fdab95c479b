"""A scratch Dagster project that uses the UnloadTargets component from its own `defs.yaml` materialises
a day with the `dagster` CLI, and the file lands complete at its key."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from unload_assets_tests.support.pipeline_helpers import csv_rows, get_bytes, query_as_text
from unload_assets_tests.support.scratch_project import BIN, DAILY_SQL, make_project

pytestmark = pytest.mark.stack

DEFS = f"""\
type: unload_assets.component.UnloadTargets
attributes:
  targets:
    - name: scratch_sales
      description: One day of sales, from another team's project.
      sql: "{DAILY_SQL} order by sale_id"
      key_template: "scratch/{{date}}/sales.csv"
      header: true
      partitioning: {{type: daily, start_date: "2026-01-01"}}
"""


def test_a_scratch_project_delivers_through_the_component(local_stack, stack_env, tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", DEFS)
    zone = ZoneInfo(stack_env.get("UNLOAD_TIMEZONE") or "America/Los_Angeles")
    day = (datetime.now(zone).date() - timedelta(days=1)).isoformat()  # the last whole day there
    env = {**os.environ, **stack_env, "PYTHONPATH": str(root), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "scratch.definitions",
         "--select", "s3/scratch_sales", "--partition", day],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    body = get_bytes(local_stack.s3.client(), "unload-local", f"scratch/{day}/sales.csv").decode()
    header, rows = csv_rows(body, header=True)
    expected = query_as_text(
        local_stack.postgres.dsn(),
        f"select sale_id, amount from public.sales where sale_date = date '{day}' order by sale_id",
    )
    assert header == ["sale_id", "amount"]
    assert rows == expected and rows
