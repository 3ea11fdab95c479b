"""The code location: this project's `defs/` folder, where `defs/unload_targets/defs.yaml` instantiates the
`UnloadTargets` component (`component.py`). `dagster dev -w workspace.yaml`, `dagster definitions validate`,
the code server and `dg dev` / `dg check defs` / `dg list defs` all load this.
Nothing is built until Dagster asks (no I/O at import)."""

import functools
from pathlib import Path

import dagster as dg

from unload_assets.catalogue import CatalogueError


@dg.definitions
@functools.cache  # Dagster calls this twice per load (discovery, then the repository)
def defs() -> dg.Definitions:
    try:
        return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    except Exception as exc:
        # A catalogue that cannot be used is the whole story: its own lines first, not under Dagster's
        # component-tree wrapping (a project of its own that loads the component sees Dagster's).
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, CatalogueError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise CatalogueError(str(cause)) from None
