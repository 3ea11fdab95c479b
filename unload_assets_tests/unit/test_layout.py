"""The layout stays readable: no import cycle, the environment read in one module, `definitions.py` only
assembling, and the deployable wheel without the local stack. The local stack's package
(`local/unload_assets_local`) keeps the first rule too.

A module is as long as its concept needs: there is no line cap. `test_longest_modules_report` prints the
longest modules of both packages (`pytest -s`) as a signal for review, never as a failure."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "unload_assets"
LOCAL_PACKAGE = REPO / "local" / "unload_assets_local"
LONGEST_REPORTED = 10


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports, anywhere in it (TYPE_CHECKING and function bodies too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            found.update(
                f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules
            )
    found.discard(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(package)
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # A package's __init__ importing its own modules is how it exposes them, not a cycle of concerns.
    for name, path in modules.items():
        if path.name == "__init__.py":
            graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state, stack = dict.fromkeys(graph, 0), []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif state[nxt] == 0:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node)
    return cycles


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert graph["unload_assets.assembly"], "the import graph was read"
    assert find_cycles(graph) == []


def test_the_local_package_has_no_import_cycle() -> None:
    graph = import_graph(LOCAL_PACKAGE)
    assert graph["unload_assets_local.emulator.server"], "the import graph was read"
    assert find_cycles(graph) == []


def test_the_emulators_sub_packages_import_each_other_without_a_circle() -> None:
    """Per protocol concern (connection, copy, unload, login, protocol, catalog, sql...): a package may
    use the ones below it, never one that uses it (ARCHITECTURE.md lists them in that order)."""
    prefix = "unload_assets_local.emulator."
    graph = import_graph(LOCAL_PACKAGE)

    def concern(module: str) -> str:
        return prefix + module[len(prefix) :].split(".")[0] if module.startswith(prefix) else module

    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        if module.startswith(prefix):
            packages.setdefault(concern(module), set()).update(
                concern(m) for m in imported if m.startswith(prefix) and concern(m) != concern(module)
            )
    assert prefix + "protocol" in packages, "the import graph was read"
    assert find_cycles(packages) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_an_import_of_a_module_by_name_counts(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("from p import b\nif TYPE_CHECKING:\n    import p.c\n")
    assert _imports("p.m", tmp_path / "m.py", {"p": tmp_path, "p.b": tmp_path, "p.c": tmp_path}) == {
        "p",
        "p.b",
        "p.c",
    }


def _all_modules() -> list[Path]:
    """Every module of the package and of the local stack's."""
    return [*sorted(PACKAGE.rglob("*.py")), *sorted(LOCAL_PACKAGE.rglob("*.py"))]


def test_longest_modules_report() -> None:
    """A report, not a rule: the longest modules, for a reviewer to ask whether each is one concept."""
    sizes = sorted(
        ((len(path.read_text(encoding="utf-8").splitlines()), path) for path in _all_modules()), reverse=True
    )
    assert sizes, "the modules were found"
    print(f"\nlongest of {len(sizes)} modules:")
    for lines, path in sizes[:LONGEST_REPORTED]:
        print(f"  {lines:5d}  {path.relative_to(REPO)}")


def test_only_environment_py_reads_the_environment() -> None:
    readers = [
        f"{path.relative_to(REPO)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "environment.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "os.environ" in line or "os.getenv" in line or "getenv(" in line
    ]
    assert readers == []


def test_definitions_only_assembles() -> None:
    """No process-wide side effect when Dagster loads the code location."""
    tree = ast.parse((PACKAGE / "definitions.py").read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"gc", "os", "sys", "signal", "resource", "logging"}


def test_the_deployable_wheel_holds_the_code_location_only(tmp_path: Path) -> None:
    """The wheel the Dockerfile installs: unload_assets and its catalogue, not the local stack, the
    emulator or the tests (those are `local/`'s own distribution and the repository's)."""
    skip = shutil.ignore_patterns(
        ".venv", ".git", ".local-stack", ".dagster_home", "test-artifacts", "*.egg-info", "__pycache__",
        ".hypothesis", "build", "dist", ".mypy_cache", ".ruff_cache",
    )  # fmt: skip
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=skip)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("unload_assets-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packaged == {"unload_assets"}
    assert "unload_assets/definitions.py" in names and "unload_assets/unload_targets.yaml" in names
    assert not [n for n in names if "emulator" in n or "local" in n.split("/")[1:2]]
