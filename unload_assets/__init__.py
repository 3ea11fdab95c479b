"""unload_assets: Redshift query results UNLOADed to S3 under clean names, every morning, confirmed in Slack.

`unload_assets.UnloadTargets` is the Dagster component (component.py). It is imported on first use, so
that the parts that need no Dagster (the SQL text rules the local stack shares) stay quick to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unload_assets.component import UnloadTargets

__all__ = ["UnloadTargets"]


def __getattr__(name: str) -> Any:
    if name == "UnloadTargets":
        from unload_assets.component import UnloadTargets

        return UnloadTargets
    raise AttributeError(f"module 'unload_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
