from unload_assets.resources.redshift import (
    RedshiftUnloadResource,
    TransientRedshiftError,
    UnloadOutcome,
    redshift_from_env,
    scrub,
)
from unload_assets.resources.settings import UnloadSettings

__all__ = [
    "RedshiftUnloadResource",
    "TransientRedshiftError",
    "UnloadOutcome",
    "UnloadSettings",
    "redshift_from_env",
    "scrub",
]
