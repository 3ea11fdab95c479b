from .redshift import RedshiftUnloadResource, TransientRedshiftError, UnloadOutcome, scrub
from .settings import UnloadSettings

__all__ = ["RedshiftUnloadResource", "TransientRedshiftError", "UnloadOutcome", "UnloadSettings", "scrub"]
