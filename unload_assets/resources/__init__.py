from unload_assets.resources.redshift import (
    RedshiftUnloadResource,
    TransientRedshiftError,
    UnloadOutcome,
)
from unload_assets.resources.settings import UnloadSettings

__all__ = [
    "RedshiftUnloadResource",
    "TransientRedshiftError",
    "UnloadOutcome",
    "UnloadSettings",
]
