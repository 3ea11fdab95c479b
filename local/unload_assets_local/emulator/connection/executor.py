"""Runs the statements the emulator handles itself: one UNLOAD (see `unload/run.py`) or COPY from S3
(see `copy/load.py`), or a simple Query batching them with other statements.
"""

from __future__ import annotations

from unload_assets_local.emulator.copy.load import load as copy_from_s3
from unload_assets_local.emulator.protocol import wire
from unload_assets_local.emulator.protocol.backend import BackendSession
from unload_assets_local.emulator.protocol.session import Session, refuse
from unload_assets_local.emulator.services import Services
from unload_assets_local.emulator.sql.statements import (
    TRANSACTION_CONTROL,
    first_word,
    is_copy_from_s3,
    is_unload,
)
from unload_assets_local.emulator.sql.translate import statement_to_postgres
from unload_assets_local.emulator.unload.command import UnloadError
from unload_assets_local.emulator.unload.parser import parse_unload
from unload_assets_local.emulator.unload.run import UnloadRun

ABORTED = "current transaction is aborted, commands ignored until end of transaction block"


async def unload(services: Services, backend: BackendSession, session: Session, sql: str) -> bytes:
    """Execute the UNLOAD in `sql`; the messages for the client, ending with ReadyForQuery."""
    if backend.status == b"E":
        return wire.error_response(ABORTED, code="25P02") + wire.ready_for_query(b"E")
    try:
        cmd = parse_unload(sql)
    except UnloadError as exc:
        return await refuse(backend, {"M": str(exc)})
    services.active += 1
    services.peak = max(services.peak, services.active)
    try:
        return await UnloadRun(services, backend, session, cmd).run()
    finally:
        services.active -= 1


_READY_LENGTH = len(wire.ready_for_query(b"I"))


async def run_one(services: Services, backend: BackendSession, session: Session, sql: str) -> bytes:
    """One statement the emulator runs itself: COPY from S3 or UNLOAD."""
    if is_copy_from_s3(sql):
        return await copy_from_s3(services.s3, backend, session, services.catalog, sql)
    return await unload(services, backend, session, sql)


async def batch(
    services: Services, backend: BackendSession, session: Session, statements: list[str]
) -> bytes:
    """Several statements in one simple Query, UNLOAD among them, with PostgreSQL's batch semantics: in
    order, stopping at the first error, all in one implicit transaction unless the batch controls its
    own (BEGIN/COMMIT/...) or the session is already in one. The messages for the client, ending with
    ReadyForQuery."""
    implicit = backend.status == b"I" and not any(first_word(s) in TRANSACTION_CONTROL for s in statements)
    if implicit:
        await backend.relay("BEGIN")
    out = bytearray()
    failed = False
    for statement in statements:
        if is_unload(statement) or is_copy_from_s3(statement):
            answer = (await run_one(services, backend, session, statement))[:-_READY_LENGTH]
        else:
            answer = await backend.relay(statement_to_postgres(statement) or statement)
        out += answer
        if has_error(answer):
            failed = True
            break
    if implicit:
        await backend.relay("ROLLBACK" if failed or backend.status == b"E" else "COMMIT")
    return bytes(out) + wire.ready_for_query(backend.status)


def has_error(messages: bytes) -> bool:
    """Whether a run of protocol messages holds an ErrorResponse."""
    return wire.first_error(messages) is not None
