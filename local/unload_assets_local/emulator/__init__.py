"""The local Redshift: a PostgreSQL wire proxy that executes UNLOAD to S3 as Redshift does.

`RedshiftEmulator` (in `server.py`) is loaded on first use, so importing the parser stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unload_assets_local.emulator.server import RedshiftEmulator

__all__ = ["RedshiftEmulator"]


def __getattr__(name: str) -> Any:
    if name == "RedshiftEmulator":
        from unload_assets_local.emulator.server import RedshiftEmulator

        return RedshiftEmulator
    raise AttributeError(name)
