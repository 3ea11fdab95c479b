"""A scratch Dagster project laid out as `create-dagster project` lays one out (`src/<project>/defs/...`),
that uses the UnloadTargets component from its own defs.yaml files: how another team drops our exports into
their project. `dg` runs with this environment's Python, as an activated venv would give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

BIN = Path(sys.executable).parent

DAILY_SQL = "select sale_id, amount from public.sales where sale_date = {{ partition_date }}"
# Names that would make a scratch project depend on this machine's settings: never passed to `dg`.
_OURS = ("REDSHIFT_", "UNLOAD_", "SLACK_", "AWS_", "DAGSTER_", "PYTEST_")

# The host project's own resources, under the keys most projects use: the component must leave them alone.
HOST_RESOURCES = """\
import dagster as dg
from dagster_aws.redshift import RedshiftClientResource
from dagster_aws.s3 import S3Resource


@dg.definitions
def host() -> dg.Definitions:
    @dg.asset(group_name="host")
    def host_table(s3: S3Resource, redshift: RedshiftClientResource) -> None: ...

    return dg.Definitions(
        assets=[host_table],
        resources={
            "s3": S3Resource(region_name="eu-west-1"),
            "redshift": RedshiftClientResource(host="host.example", user="host", password="x", database="h"),
        },
    )
"""


def make_project(
    root: Path, instances: Mapping[str, str], files: Mapping[str, str] | None = None, *, name: str = "scratch"
) -> Path:
    """`root/` with pyproject.toml ([tool.dg]) and `src/<name>/defs/<folder>/defs.yaml` for each instance
    (`instances`: folder -> defs.yaml text); `files`: more files by path relative to `src/<name>/defs`."""
    package = root / "src" / name
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "{name}"
            version = "0.0.1"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "{name}"
            """
        )
    )
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    for folder, defs_yaml in instances.items():
        (package / "defs" / folder).mkdir(parents=True)
        (package / "defs" / folder / "defs.yaml").write_text(textwrap.dedent(defs_yaml))
    for relative, text in (files or {}).items():
        path = package / "defs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def clean_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any of the project's settings, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**base, **(env or {})}


def dg(root: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`dg <args>` in the project, with this environment's Python and only the settings in `env`."""
    full = {
        **clean_environment(env),
        "VIRTUAL_ENV": str(BIN.parent),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(root / "src"),
        "NO_COLOR": "1",
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",  # no look at PyPI
    }
    return subprocess.run(
        [str(BIN / "dg"), *args], cwd=root, env=full, capture_output=True, text=True, timeout=240
    )


def listed(root: Path, env: Mapping[str, str] | None = None) -> dict:
    done = dg(root, "list", "defs", "--json", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)
