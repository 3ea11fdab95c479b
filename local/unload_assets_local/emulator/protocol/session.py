"""The client's session as an UNLOAD sees it: who it is, the settings it borrows, how it fails.

Settings are changed with set_config(..., false) and put back the same way after the UNLOAD. Inside a
transaction block that later aborts, PostgreSQL reverts them on ROLLBACK by itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from unload_assets_local.emulator.protocol import wire
from unload_assets_local.emulator.protocol.backend import BackendError, BackendSession
from unload_assets_local.emulator.sql.statements import literal

_BORROWED = ("standard_conforming_strings", "escape_string_warning")


@dataclass(frozen=True)
class Session:
    database: str
    user: str
    pid: int  # the backend's process id (Redshift's session id)


class Settings:
    def __init__(self, backend: BackendSession) -> None:
        self.backend = backend
        self.saved: dict[str, str] = {}
        self.user_id: int | None = None
        self.statement_timeout: float | None = None  # seconds; the session's, for the UNLOAD as a whole

    async def save(self) -> None:
        rows = await self.backend.query(
            "SELECT current_setting('standard_conforming_strings'), current_setting('escape_string_warning'),"
            " (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user),"
            " (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'statement_timeout')"
        )
        scs, esw, oid, timeout_ms = (value.decode() if value is not None else "" for value in rows[0])
        self.saved = {"standard_conforming_strings": scs, "escape_string_warning": esw}
        self.user_id = int(oid) if oid else None
        self.statement_timeout = int(timeout_ms or 0) / 1000 or None

    async def literals(self, *, standard: bool) -> None:
        """Read string literals as PostgreSQL does (standard) or as Redshift does (backslash escapes)."""
        await self._set(
            {"standard_conforming_strings": "on" if standard else "off", "escape_string_warning": "off"}
        )

    async def restore(self, extra: dict[str, object]) -> None:
        """Put the borrowed settings back and set `extra` (e.g. the last-UNLOAD count and id)."""
        await self._set({**self.saved, **{key: str(value) for key, value in extra.items()}})

    async def _set(self, values: dict[str, str]) -> None:
        if values:
            calls = ", ".join(f"set_config({literal(k)}, {literal(v)}, false)" for k, v in values.items())
            await self.backend.query(f"SELECT {calls}")


async def refuse(backend: BackendSession, fields: dict[str, str]) -> bytes:
    """ErrorResponse + ReadyForQuery for a failed UNLOAD.

    In a transaction block the backend's transaction is aborted too (by raising the same error there),
    so the client's transaction state is the one Redshift would leave.
    """
    full = {"S": "ERROR", "V": "ERROR", "C": "XX000", **fields}
    if backend.status == b"T":
        message = literal(full.get("M", "UNLOAD failed")).replace("$", "\\x24")
        with contextlib.suppress(BackendError):
            await backend.query(
                f"DO $unload$BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = {message}; END$unload$"
            )
    return wire.fields_message(b"E", full) + wire.ready_for_query(backend.status)
