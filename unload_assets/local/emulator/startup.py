"""A client's startup: SSL refused, cancel requests forwarded, authentication relayed untouched.

The proxy never sees a password: SCRAM (or whatever PostgreSQL asks for) passes message by message
between the client and its new backend until the backend says ReadyForQuery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from dataclasses import dataclass

from unload_assets.local.emulator import wire
from unload_assets.local.emulator.catalog import Catalog
from unload_assets.local.emulator.session import Session

log = logging.getLogger(__name__)
_U32_AT = struct.Struct("!I").unpack_from
_NEEDS_ANSWER = {2, 3, 5, 7, 8, 9, 10, 11}  # authentication requests the client must answer


@dataclass
class Started:
    backend: wire.MessageStream
    backend_writer: asyncio.StreamWriter
    status: bytes  # from the first ReadyForQuery
    key: bytes  # BackendKeyData: process id + secret, for CancelRequest
    session: Session


async def start_session(
    client: wire.MessageStream,
    client_writer: asyncio.StreamWriter,
    pg_address: tuple[str, int],
    catalog: Catalog,
) -> Started | None:
    """Connect the client to a backend of its own; None if it only wanted a cancel or was refused."""
    while True:
        code, packet = await wire.read_startup(client.reader)
        if code in (wire.SSL_REQUEST, wire.GSSENC_REQUEST):
            client_writer.write(b"N")  # no encryption on loopback
            continue
        if code == wire.CANCEL_REQUEST:
            await send_cancel(pg_address, packet)
            return None
        break
    params = wire.startup_params(packet)
    database = params.get("database") or params.get("user", "")
    try:
        await asyncio.to_thread(catalog.install, database)
    except Exception as exc:  # noqa: BLE001 - e.g. no such database: PostgreSQL tells the client below
        log.debug("catalog not installed in %r: %s", database, exc)
    reader, backend_writer = await asyncio.open_connection(*pg_address, limit=wire.STREAM_LIMIT)
    backend = wire.MessageStream(reader)
    backend_writer.write(packet)
    key = b""
    while True:
        kind, raw = await backend.read_raw()
        client_writer.write(raw)
        if kind == ord("R") and _U32_AT(raw, 5)[0] in _NEEDS_ANSWER:
            await client_writer.drain()
            backend_writer.write((await client.read_raw())[1])
        elif kind == ord("K"):
            key = raw[5:13]
        elif kind == ord("E"):
            await client_writer.drain()
            backend_writer.close()
            return None
        elif kind == ord("Z"):
            await client_writer.drain()
            pid = _U32_AT(key, 0)[0] if key else 0
            return Started(
                backend, backend_writer, raw[5:6], key, Session(database, params.get("user", ""), pid)
            )


async def send_cancel(pg_address: tuple[str, int], packet: bytes) -> None:
    """Pass a CancelRequest on to PostgreSQL (on a connection of its own, as the protocol wants)."""
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection(*pg_address)
        writer.write(packet)
        await writer.drain()
        writer.close()


def cancel_packet(key: bytes) -> bytes:
    return struct.pack("!ii", 16, wire.CANCEL_REQUEST) + key
