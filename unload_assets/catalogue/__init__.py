"""The catalogue: which exports exist, and how each is written (`unload_targets.yaml`)."""

from unload_assets.catalogue.load import ENV_VAR, PACKAGED_CATALOGUE, catalogue_from_mapping, load_catalogue
from unload_assets.catalogue.model import Catalogue, CatalogueError, UnloadTarget

__all__ = [
    "ENV_VAR",
    "PACKAGED_CATALOGUE",
    "Catalogue",
    "CatalogueError",
    "UnloadTarget",
    "catalogue_from_mapping",
    "load_catalogue",
]
