"""A stand-in for "a machine with PyPI" that needs no network: every distribution of this test environment
except unload_assets itself (and its local stack), offered to a fresh virtualenv as if pip had installed
them from PyPI — importable through a `.pth` file, each with its console scripts in the venv's `bin/`.

`pip install` in such a venv (with `PIP_NO_INDEX=1`) finds dagster and the rest already satisfied and
installs only what is new: the project being made, and unload_assets from the wheel the test built. This is
how the README's drop-in recipe runs literally in `pipeline/test_readme_recipe.py`.

    python -m unload_assets_tests.support.offline_machine <machine folder> <venv>
"""

from __future__ import annotations

import importlib.metadata
import sys
import sysconfig
from pathlib import Path

OURS = ("unload_assets", "unload_assets_local", "__editable__", "_unload_assets")
SCRIPT = """#!{python}
import re
import sys
from {module} import {head}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({call}())
"""


def build(machine: Path) -> Path:
    """`machine/`: a folder of links to every package this environment has, but unload_assets's own."""
    machine.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name.startswith(OURS) or entry.suffix == ".pth" or entry.name == "__pycache__":
            continue
        link = machine / entry.name
        if not link.exists():
            link.symlink_to(entry)
    return machine


def link(machine: Path, venv: Path) -> None:
    """Offer `machine`'s packages to `venv`, with their console scripts, as pip would have installed them."""
    python = venv / "bin" / "python"
    [site] = (venv / "lib").glob("python3*/site-packages")
    (site / "offline_machine.pth").write_text(f"{machine}\n")
    for dist in importlib.metadata.distributions(path=[str(machine)]):
        for entry in dist.entry_points.select(group="console_scripts"):
            script = venv / "bin" / entry.name
            if script.exists():
                continue
            head = entry.attr.split(".")[0]
            script.write_text(SCRIPT.format(python=python, module=entry.module, head=head, call=entry.attr))
            script.chmod(0o755)


if __name__ == "__main__":
    link(Path(sys.argv[1]), Path(sys.argv[2]))
