"""A client's startup: TLS when configured, cancel requests forwarded, authentication relayed untouched.

For ordinary users the proxy never sees a password: SCRAM (or whatever PostgreSQL asks for) passes
message by message between the client and its new backend until the backend says ReadyForQuery.
Redshift's temporary IAM users (`IAM:alice`, minted by get_cluster_credentials) exist only here: the
emulator checks their password itself (MD5, as Redshift asks), against the credentials minted and not
expired, then logs in to PostgreSQL with a login of its own (`backend_login`).
Those checks are in `logins.py`; the startup parameters each side expects, in `startup_parameters.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from unload_assets_local.emulator import wire
from unload_assets_local.emulator.auth import AUTH_OK, AuthError, BackendLogin
from unload_assets_local.emulator.catalog import Catalog
from unload_assets_local.emulator.credentials import CredentialRegistry, is_temporary_user
from unload_assets_local.emulator.logins import accept_temporary_user, accept_user, refuse_login
from unload_assets_local.emulator.session import Session
from unload_assets_local.emulator.startup_parameters import as_redshift, for_postgres

log = logging.getLogger(__name__)
_U32_AT = struct.Struct("!I").unpack_from
_NEEDS_ANSWER = {2, 3, 5, 7, 8, 9, 10, 11}  # authentication requests the client must answer
_AUTH_OK = wire.message(b"R", struct.pack("!I", AUTH_OK))
# Answers one AuthenticationRequest from the backend: what to send it back, if anything.
Authenticate = Callable[[bytes], Awaitable[bytes | None]]


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
    *,
    credentials: CredentialRegistry | None = None,
    backend_login: tuple[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    logins: dict[str, str] | None = None,
) -> Started | None:
    """Connect the client to a backend of its own; None if it only wanted a cancel or was refused."""
    tls_started = False
    while True:
        code, packet = await wire.read_startup(client.reader)
        if code == wire.SSL_REQUEST and tls is not None and not tls_started:
            # As Redshift: 'S', then the TLS handshake; the startup packet follows encrypted.
            client_writer.write(b"S")
            await client_writer.drain()
            await client_writer.start_tls(tls)
            tls_started = True
            continue
        if code in (wire.SSL_REQUEST, wire.GSSENC_REQUEST):
            client_writer.write(b"N")  # no TLS configured (or asked twice), no GSSAPI: go on in plain text
            continue
        if code == wire.CANCEL_REQUEST:
            await send_cancel(pg_address, packet)
            return None
        break
    params = wire.startup_params(packet)
    user = params.get("user", "")
    database = params.get("database") or user
    known = await asyncio.to_thread(catalog.startup_parameters)
    forwarded = {**for_postgres(params, known), "database": database}
    login: BackendLogin | None = None
    if is_temporary_user(user):
        login = await accept_temporary_user(client, client_writer, user, credentials, backend_login)
        if login is None:
            return None
        forwarded["user"] = login.user
    elif logins is not None:
        login = await accept_user(client, client_writer, user, logins, over_tls=tls_started)
        if login is None:
            return None
    startup = wire.startup_packet(code, forwarded)
    try:
        await asyncio.to_thread(catalog.install, database)
    except Exception as exc:  # noqa: BLE001 - e.g. no such database: PostgreSQL tells the client below
        log.debug("catalog not installed in %r: %s", database, exc)
    reader, backend_writer = await asyncio.open_connection(*pg_address, limit=wire.STREAM_LIMIT)
    backend = wire.MessageStream(reader)
    backend_writer.write(startup)
    authenticate = _relay(client, client_writer) if login is None else _log_in(login, client_writer)
    key = b""
    while True:
        kind, raw = await backend.read_raw()
        if kind == ord("R"):
            try:
                answer = await authenticate(raw)
            except AuthError as exc:
                log.warning(
                    "the emulator could not log in to PostgreSQL as %r: %s", login and login.user, exc
                )
                await refuse_login(
                    client_writer, f"the emulator could not log in to PostgreSQL: {exc}", "28000"
                )
                backend_writer.close()
                return None
            if answer is not None:
                backend_writer.write(answer)
            continue
        client_writer.write(as_redshift(raw) if kind == ord("S") else raw)
        if kind == ord("K"):
            key = raw[5:13]
        elif kind == ord("E"):
            await client_writer.drain()
            backend_writer.close()
            return None
        elif kind == ord("Z"):
            await client_writer.drain()
            pid = _U32_AT(key, 0)[0] if key else 0
            return Started(backend, backend_writer, raw[5:6], key, Session(database, user, pid))


def _relay(client: wire.MessageStream, client_writer: asyncio.StreamWriter) -> Authenticate:
    """Ordinary users: PostgreSQL's requests go to the client and its answers back, untouched."""

    async def authenticate(raw: bytes) -> bytes | None:
        client_writer.write(raw)
        if _U32_AT(raw, 5)[0] not in _NEEDS_ANSWER:
            return None
        await client_writer.drain()
        return (await client.read_raw())[1]

    return authenticate


def _log_in(login: BackendLogin, client_writer: asyncio.StreamWriter) -> Authenticate:
    """Temporary users: the emulator answers PostgreSQL itself; the client hears Ok when PostgreSQL does."""

    async def authenticate(raw: bytes) -> bytes | None:
        answer = login.answer(raw[5:])
        if _U32_AT(raw, 5)[0] == AUTH_OK:
            client_writer.write(_AUTH_OK)
        return answer

    return authenticate


async def send_cancel(pg_address: tuple[str, int], packet: bytes) -> None:
    """Pass a CancelRequest on to PostgreSQL (on a connection of its own, as the protocol wants)."""
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection(*pg_address)
        writer.write(packet)
        await writer.drain()
        writer.close()


def cancel_packet(key: bytes) -> bytes:
    return struct.pack("!ii", 16, wire.CANCEL_REQUEST) + key
