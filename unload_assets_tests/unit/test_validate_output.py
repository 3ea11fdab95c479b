"""What CI sees: `dagster definitions validate` and `dg check defs`, in strict mode, fail on a catalogue
problem with the problem as the first line after Dagster's own; and the line that says which catalogue was
read, and from where, when the shell and a `.env` disagree. Dagster's CLI in subprocesses (`cli`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unload_assets_tests.support.catalogue_samples import BAD, GOOD, KINDS
from unload_assets_tests.support.scratch_project import clean_environment

pytestmark = pytest.mark.cli
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Lines Dagster prints before anything of ours, which no setting of ours can remove: its deprecation
# notice for `definitions validate` itself (a Python warning and its source line), and `dg`'s YAML check.
DAGSTERS_OWN = ("SupersessionWarning", "  return callback(", "All component YAML validated successfully.")


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {
        **clean_environment(env),
        "NO_COLOR": "1",
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        "VIRTUAL_ENV": str(BIN.parent),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=240)


def _ours(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip() and not any(m in line for m in DAGSTERS_OWN)]


@pytest.mark.parametrize("command", ["validate", "dg"])
@pytest.mark.parametrize(("kind", "entry", "told", "line"), BAD, ids=KINDS)
def test_strict_validation_fails_with_the_catalogue_problem_first(
    tmp_path: Path, dagster_home: Path, command: str, kind: str, entry: str, told: str, line: int
) -> None:
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(GOOD + entry)
    argv = (
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"]
        if command == "validate"
        else [str(BIN / "dg"), "check", "defs"]
    )
    env = {"UNLOAD_TARGETS_FILE": str(catalogue), "UNLOAD_STRICT": "1", "DAGSTER_HOME": str(dagster_home)}
    done = _run(argv, REPO, env)
    assert done.returncode != 0
    first = _ours(done.stdout + done.stderr)[0]
    where, _, what = told.partition(": ")
    assert f"{catalogue}:{line}: {what}" in first, first


def test_the_load_says_which_catalogue_it_read_and_that_dot_env_beat_the_shell(
    tmp_path: Path, dagster_home: Path
) -> None:
    """Dagster loads `.env` over the shell; the line that names the catalogue says so, and names the shell
    value it replaced."""
    ours, other = tmp_path / "from_dotenv.yaml", tmp_path / "from_shell.yaml"
    for path in (ours, other):
        path.write_text(GOOD)
    (tmp_path / ".env").write_text(f"UNLOAD_TARGETS_FILE={ours}\n")
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_module:\n      module_name: unload_assets.definitions\n"
        f"      working_directory: {REPO}\n"
    )
    argv = [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"]
    env = {"UNLOAD_TARGETS_FILE": str(other), "DAGSTER_HOME": str(dagster_home)}
    done = _run(argv, tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    said = next(line for line in _ours(done.stderr + done.stdout) if "'unloads': catalogue" in line)
    assert f"catalogue {ours} (UNLOAD_TARGETS_FILE in {tmp_path / '.env'}" in said, said
    assert f"it replaced the shell's '{other}'" in said, said
    (tmp_path / ".env").write_text("")  # without it in .env, the shell's choice holds
    done = _run(argv, tmp_path, env)
    said = next(line for line in _ours(done.stderr + done.stdout) if "'unloads': catalogue" in line)
    assert f"catalogue {other} (UNLOAD_TARGETS_FILE from the environment (the shell))" in said, said
