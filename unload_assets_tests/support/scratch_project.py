"""A scratch Dagster project, as `dg scaffold project` lays one out, that uses the UnloadTargets component
from its own `defs.yaml`: how another team drops our exports into their project."""

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


def make_project(root: Path, defs_yaml: str, files: Mapping[str, str] | None = None) -> Path:
    """`root/` with pyproject.toml ([tool.dg]), package `scratch` and `scratch/defs/exports/defs.yaml`."""
    (root / "scratch" / "defs" / "exports").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "scratch"
            version = "0.0.1"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "scratch"
            """
        )
    )
    (root / "scratch" / "__init__.py").write_text("")
    (root / "scratch" / "defs" / "__init__.py").write_text("")
    (root / "scratch" / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (root / "scratch" / "defs" / "exports" / "defs.yaml").write_text(textwrap.dedent(defs_yaml))
    for name, text in (files or {}).items():
        (root / "scratch" / "defs" / "exports" / name).write_text(textwrap.dedent(text))
    return root


def dg(root: Path, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`dg <args>` in the project, with this environment's Python (as an activated venv would give)."""
    full = {**os.environ, **env, "VIRTUAL_ENV": str(BIN.parent), "PYTHONPATH": str(root), "NO_COLOR": "1"}
    return subprocess.run(
        [str(BIN / "dg"), *args], cwd=root, env=full, capture_output=True, text=True, timeout=240
    )


def listed(root: Path, env: Mapping[str, str]) -> dict:
    done = dg(root, "list", "defs", "--json", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)
