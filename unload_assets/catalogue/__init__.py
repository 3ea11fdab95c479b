"""The catalogue: which exports exist, and how each is written (`unload_targets.yaml`)."""

from unload_assets.catalogue.load import (
    PACKAGED_CATALOGUE,
    catalogue_from_mapping,
    inline_catalogue,
    load_catalogue,
    read_catalogue,
)
from unload_assets.catalogue.model import Catalogue, CatalogueError, NotLoaded, Problem, UnloadTarget

__all__ = [
    "PACKAGED_CATALOGUE",
    "Catalogue",
    "CatalogueError",
    "NotLoaded",
    "Problem",
    "UnloadTarget",
    "catalogue_from_mapping",
    "inline_catalogue",
    "load_catalogue",
    "read_catalogue",
]
