"""The README's drop-in recipe ("Use it in another Dagster project"), read from the README's own code block
and run line by line in bash: create-dagster makes a project, the wheel built from this checkout installs
into its fresh virtualenv, `dg` scaffolds an instance, checks and lists it, and launches one day against the
local stack; the object it wrote is read back. Offline: the packages PyPI would serve come from this test
environment (support/offline_machine.py), which the test offers to each venv right after the recipe makes
it — the one line the test adds."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest
from unload_assets_local.stack import LocalStack

from unload_assets_tests.support.offline_machine import build
from unload_assets_tests.support.pipeline_helpers import csv_rows, decompress, get_bytes
from unload_assets_tests.support.scratch_project import clean_environment, dg, listed

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
MARK = "<!-- drop-in recipe"


def recipe() -> list[str]:
    """The commands of the README's recipe block, as a user would paste them."""
    after = (REPO / "README.md").read_text().split(MARK, 1)[1]
    block = after.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_recipe_works_as_written(
    tmp_path: Path, local_stack: LocalStack, stack_env: dict[str, str]
) -> None:
    lines = recipe()
    assert lines[0].startswith("pip install create-dagster==1.13.27") and lines[-1].startswith("dg launch")
    wheelhouse, machine = tmp_path / "dist", build(tmp_path / "machine")
    subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheelhouse, REPO],
        check=True, env={**os.environ, "PIP_NO_INDEX": "1"}, capture_output=True,
    )  # fmt: skip
    [wheel] = wheelhouse.glob("unload_assets-*.whl")
    day = date.today() - timedelta(days=25)  # inside the demo data, away from the days other tests write
    helper = "unload_assets_tests.support.offline_machine"
    link = f"{shlex.quote(str(PYTHON))} -m {helper} {shlex.quote(str(machine))}"
    script = [
        "set -euo pipefail",
        # The user's machine: a Python with pip, and PyPI (offline: this environment's packages).
        f"{shlex.quote(str(PYTHON))} -m venv {tmp_path}/machine-python",
        f"{link} {tmp_path}/machine-python",
        f"export PATH={tmp_path}/machine-python/bin:$PATH",
    ]
    for line in lines:
        script.append(line)
        if line.startswith("python -m venv .venv"):
            script.append(f"{link} .venv")
    env = clean_environment({
        **stack_env,
        "UNLOAD_ASSETS": str(wheel),
        "DAY": day.isoformat(),
        "PIP_NO_INDEX": "1",  # nothing downloads
        "PIP_NO_BUILD_ISOLATION": "0",  # build the project with the hatchling already here
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        "DAGSTER_HOME": str(tmp_path / "dagster-home"),
        "PYTHONPATH": str(REPO),  # for the one added line, which runs this test suite's helper
        "HOME": str(tmp_path),
    })  # fmt: skip
    (tmp_path / "dagster-home").mkdir()
    (tmp_path / "dagster-home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    project = tmp_path / "my-project"
    folder = project / "src" / "my_project" / "defs" / "exports"
    assert {p.name for p in folder.iterdir()} == {"defs.yaml", "exports.yaml"}

    # The object the launched day wrote, under its key, with the day's rows.
    s3, bucket = local_stack.s3.client(), stack_env["UNLOAD_BUCKET"]
    body = decompress(get_bytes(s3, bucket, f"exports/sales/{day}/sales_{day}.csv.gz"), "gzip").decode()
    header, rows = csv_rows(body, header=True)
    assert header == ["sale_id", "customer_id", "amount", "sale_date"]
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from public.sales where sale_date = %s", (day,))
        assert len(rows) == cur.fetchone()[0]  # type: ignore[index]

    # And the project checks and lists with nothing set at all: CI needs no credentials.
    checked = dg(project, "check", "defs", env={})
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert {a["asset_key"] for a in listed(project, {})["assets"]} == {
        "s3/exports_daily_sales",
        "redshift/public/sales",
    }
