"""dbt-redshift, unmodified, against the emulator: a seed, a table model with `dist`/`sort`, a view (and a
late-binding one), an incremental model run twice (the second run merges), `dbt test` and
`dbt docs generate`.

dbt cannot share the test venv (requirements-dbt.txt says why): it runs from `.venv-dbt`, which
`make setup` builds. The whole project is built once for the module, in one dbt process (dbt's own
programmatic entry, `dbtRunner`, one command after the other), and each test reads one part of what
that build did. Nothing is downloaded: no packages, no version check, no anonymous usage stats.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from unload_assets_tests.support.emulator_helpers import connect

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
DBT_PYTHON = REPO / ".venv-dbt" / "bin" / "python"
PROJECT = Path(__file__).resolve().parent / "dbt_project"
COMMANDS = [
    ["build"],  # seed, the three models, their tests
    ["run", "--select", "visits", "--vars", "{run: 2}"],  # the incremental model again: a merge
    ["test"],
    ["docs", "generate"],
]
# Runs the commands in one dbt process and prints, per command, whether it succeeded.
DRIVER = textwrap.dedent(
    """
    import json, sys
    from dbt.cli.main import dbtRunner
    runner, outcomes = dbtRunner(), []
    for args in json.loads(sys.argv[1]):
        result = runner.invoke(["--no-version-check", "--no-use-colors", *args])
        outcomes.append({"args": args, "success": result.success, "error": str(result.exception or "")})
        if not result.success:
            break
    print("DBT-OUTCOMES " + json.dumps(outcomes))
    """
)


@pytest.fixture(scope="module")
def dbt_build(emulator, pg_cluster, tmp_path_factory) -> dict[str, Any]:
    if not DBT_PYTHON.exists():
        message = f"{DBT_PYTHON} is missing: `make setup` builds it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    project = tmp_path_factory.mktemp("dbt") / "project"
    shutil.copytree(PROJECT, project)
    schema = f"dbt_{uuid.uuid4().hex[:8]}"
    (project / "profiles.yml").write_text(
        textwrap.dedent(
            f"""
            emulator_clients:
              target: local
              outputs:
                local:
                  type: redshift
                  host: 127.0.0.1
                  port: {emulator.port}
                  user: {pg_cluster.user}
                  password: {pg_cluster.password}
                  dbname: {pg_cluster.database}
                  schema: {schema}
                  threads: 1
                  sslmode: disable
                  connect_timeout: 10
                  retries: 0
            """
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DBT_")},
        "DBT_PROFILES_DIR": str(project),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "DO_NOT_TRACK": "1",
        "HOME": str(project),  # dbt keeps nothing of this run anywhere else
    }
    proc = subprocess.run(
        [str(DBT_PYTHON), "-c", DRIVER, json.dumps(COMMANDS)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("DBT-OUTCOMES ")), None)
    assert line is not None, proc.stdout[-4000:] + proc.stderr[-4000:]
    outcomes = json.loads(line.removeprefix("DBT-OUTCOMES "))
    log = (project / "logs" / "dbt.log").read_text(errors="replace")
    assert pg_cluster.password not in log  # dbt logs statements, never the profile's password
    return {"project": project, "schema": schema, "outcomes": outcomes, "stdout": proc.stdout, "log": log}


def _rows(emulator, pg_cluster, sql: str) -> list[tuple]:
    conn = connect(emulator, pg_cluster)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_every_dbt_command_succeeds(dbt_build):
    failed = [o for o in dbt_build["outcomes"] if not o["success"]]
    assert not failed, f"{failed}\n{dbt_build['stdout'][-6000:]}"
    assert [o["args"][0] for o in dbt_build["outcomes"]] == ["build", "run", "test", "docs"]


def test_the_seed_and_the_table_model_with_dist_and_sort(dbt_build, emulator, pg_cluster):
    schema = dbt_build["schema"]
    compiled = next((dbt_build["project"] / "target" / "run").rglob("people_table.sql")).read_text()
    assert "distkey (id)" in compiled and "compound sortkey(name)" in compiled  # Redshift's DDL was sent
    assert _rows(emulator, pg_cluster, f"select id, name, city from {schema}.people_table order by id") == [
        (1, "ada", "London"),
        (2, "grace", "New York"),
        (3, "linus", "Helsinki"),
    ]


def test_the_view(dbt_build, emulator, pg_cluster):
    schema = dbt_build["schema"]
    assert _rows(emulator, pg_cluster, f"select shouting_name from {schema}.people_view order by id") == [
        ("ADA",),
        ("GRACE",),
        ("LINUS",),
    ]
    assert _rows(
        emulator,
        pg_cluster,
        f"select table_type from svv_tables where table_schema = '{schema}' and table_name = 'people_view'",
    ) == [("VIEW",)]


def test_the_incremental_model_merges_on_its_second_run(dbt_build, emulator, pg_cluster):
    assert "merge into" in dbt_build["log"]
    rows = _rows(
        emulator, pg_cluster, f"select id, name, run_number from {dbt_build['schema']}.visits order by id"
    )
    assert rows == [(1, "ada", 1), (2, "grace", 2), (3, "linus", 2), (4, "margaret", 2)]


def test_dbt_test_passes_after_the_merge(dbt_build):
    assert "PASS=6" in dbt_build["stdout"].split("Running with dbt")[-2]  # the `test` command's summary


def test_docs_generate_lists_every_models_columns(dbt_build):
    catalog = json.loads((dbt_build["project"] / "target" / "catalog.json").read_text())
    assert not catalog.get("errors")
    columns = {
        node["metadata"]["name"]: (node["metadata"]["type"], list(node["columns"]))
        for node in catalog["nodes"].values()
    }
    assert columns == {
        "people": ("BASE TABLE", ["id", "name", "city"]),
        "people_table": ("BASE TABLE", ["id", "name", "city"]),
        "people_view": ("VIEW", ["id", "shouting_name"]),
        "people_late_view": ("VIEW", ["id", "city"]),  # bind: false
        # dbt widened `name` for 'margaret' on the second run (add, drop, rename), as on Redshift
        "visits": ("BASE TABLE", ["id", "run_number", "name"]),
    }
    stats = next(n for n in catalog["nodes"].values() if n["metadata"]["name"] == "people_table")["stats"]
    assert stats["diststyle"]["value"] == "EVEN"  # from svv_table_info: the emulator keeps no table design


def test_no_intermediate_relation_is_left(dbt_build, emulator, pg_cluster):
    with pytest.raises(psycopg2.errors.UndefinedTable):
        _rows(emulator, pg_cluster, f"select * from {dbt_build['schema']}.people_table__dbt_tmp")
