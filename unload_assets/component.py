"""`UnloadTargets`: the exports as a Dagster Component, for this project's `defs.yaml` and any other's.

In any Dagster project (`dg scaffold project`, then `defs/<name>/defs.yaml`):

    type: unload_assets.component.UnloadTargets
    attributes:
      catalogue: exports.yaml        # a catalogue file beside this defs.yaml ...
      # defaults: {format: csv}      # ... or the catalogue inline: defaults and targets,
      # targets:                     #     exactly as in a catalogue file
      #   - name: sales_data
      #     ...

It produces what this project's code location has: the assets `s3/<target>` and their checks, the
Redshift tables upstream, the 09:00 jobs and schedules, the Slack sensors, and the resources they use
(`redshift`, `s3`, `unload_settings`, `slack`, `handoff_io_manager`), configured from the environment
(README, "Configuration"). The SQL keeps its `{{ partition_date }}` placeholders: the catalogue is passed
through untouched, not rendered as a component template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import dagster as dg

from unload_assets.assembly import build_definitions_for
from unload_assets.catalogue import Catalogue, catalogue_from_mapping, load_catalogue


class UnloadTargets(dg.Component, dg.Model, dg.Resolvable):
    """Redshift query results UNLOADed to S3 under clean names, every morning, confirmed in Slack."""

    catalogue: str | None = None
    """A catalogue file, relative to the folder of this defs.yaml (absolute paths work too). Neither
    this nor `targets`: UNLOAD_TARGETS_FILE, else the catalogue packaged with unload_assets."""
    defaults: Annotated[dict[str, Any] | None, dg.Resolver.passthrough()] = None
    """Inline catalogue: fields every target gets unless it sets its own."""
    targets: Annotated[list[dict[str, Any]] | None, dg.Resolver.passthrough()] = None
    """Inline catalogue: the targets, as in a catalogue file."""
    executor: bool = True
    """Set the project's executor (steps forked from a warm server, or Celery with
    UNLOAD_CELERY_BROKER_URL); false when the host project sets its own."""

    def read_catalogue(self, folder: Path) -> Catalogue:
        if self.targets is not None and self.catalogue is not None:
            raise dg.DagsterInvalidDefinitionError(
                f"UnloadTargets in {folder}: give `catalogue` (a file) or `targets` (inline), not both"
            )
        if self.targets is not None:
            data = {"defaults": self.defaults or {}, "targets": self.targets}
            return catalogue_from_mapping(data, folder / "defs.yaml")
        if self.defaults is not None:
            raise dg.DagsterInvalidDefinitionError(
                f"UnloadTargets in {folder}: `defaults` go with inline `targets` (a file has its own)"
            )
        return load_catalogue(folder / self.catalogue if self.catalogue else None)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_definitions_for(self.read_catalogue(context.path), executor=self.executor)
