"""The code location: this project's `defs/` folder, where `defs/unload_targets/defs.yaml` instantiates the
`UnloadTargets` component (`component.py`) on the catalogue. `dagster dev -w workspace.yaml`, `dagster
definitions validate`, the code server and `dg dev` / `dg check defs` / `dg list defs` all load this.
Nothing is built until Dagster asks (no I/O at import)."""

import functools
from pathlib import Path

import dagster as dg


@dg.definitions
@functools.cache  # Dagster calls this twice per load (discovery, then the repository)
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
