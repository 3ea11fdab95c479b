"""A client's startup, from its first packet to ReadyForQuery: TLS when configured, cancel requests
forwarded, the startup parameters each side expects, and the login.

For ordinary users the proxy never sees a password: SCRAM (or whatever PostgreSQL asks for) passes
message by message between the client and its new backend until the backend says ReadyForQuery.
Redshift's temporary IAM users (`IAM:alice`, minted by get_cluster_credentials) exist only here: the
emulator checks their password itself (MD5, as Redshift asks), against the credentials minted and not
expired, then logs in to PostgreSQL with a login of its own (`backend_login`). Given the cluster's users
(`logins`), it checks every other user's password the same way. PostgreSQL is given only the startup
parameters it accepts; the client is told the server version Redshift reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from unload_assets_local.emulator.catalog.system_tables import Catalog
from unload_assets_local.emulator.login.credentials import CredentialRegistry, is_temporary_user
from unload_assets_local.emulator.login.passwords import (
    AUTH_CLEARTEXT,
    AUTH_MD5,
    AUTH_OK,
    AuthError,
    BackendLogin,
    md5_matches,
)
from unload_assets_local.emulator.protocol import wire
from unload_assets_local.emulator.protocol.session import Session

log = logging.getLogger(__name__)
_U32_AT = struct.Struct("!I").unpack_from
_NEEDS_ANSWER = {2, 3, 5, 7, 8, 9, 10, 11}  # authentication requests the client must answer
_AUTH_OK = wire.message(b"R", struct.pack("!I", AUTH_OK))
# Answers one AuthenticationRequest from the backend: what to send it back, if anything.
Authenticate = Callable[[bytes], Awaitable[bytes | None]]


# ---- the startup parameters each side expects ------------------------------------------------

# What Redshift reports as its version, and what drivers parse (redshift_connector picks its type
# conversions by it); PostgreSQL's own "16.x (Debian ...)" is not a version they can read.
SERVER_VERSION = "8.0.2"
# Startup parameters that are not PostgreSQL settings but always come from Redshift's drivers;
# PostgreSQL refuses a connection that sends them (FATAL 42704). Used when the catalog cannot list
# PostgreSQL's settings; otherwise everything that is not a setting is left out.
REDSHIFT_DRIVER_PARAMETERS = frozenset(
    {
        "client_protocol_version",
        "driver_version",
        "os_version",
        "plugin_name",
        "idp_type",
        "provider_name",
        "token_type",
        "identity_namespace",
        "idc_client_display_name",
    }
)
_PROTOCOL_PARAMETERS = ("user", "database", "options", "replication")


def for_postgres(params: dict[str, str], settings: frozenset[str] | None) -> dict[str, str]:
    """The startup parameters PostgreSQL accepts: the protocol's own and PostgreSQL's settings (names
    compared without case, as PostgreSQL does); a Redshift driver's extras are accepted and ignored."""

    def accepted(name: str) -> bool:
        if name in _PROTOCOL_PARAMETERS or name.startswith("_pq_."):
            return True
        return name.lower() in settings if settings is not None else name not in REDSHIFT_DRIVER_PARAMETERS

    ignored = [name for name in params if not accepted(name)]
    if ignored:
        log.debug("startup parameters ignored, as Redshift does: %s", ", ".join(ignored))
    return {name: value for name, value in params.items() if name not in ignored}


def as_redshift(parameter_status: bytes) -> bytes:
    """A ParameterStatus message, with `server_version` reported as Redshift reports it."""
    name, _, _ = parameter_status[5:].partition(b"\0")
    if name != b"server_version":
        return parameter_status
    return wire.message(b"S", wire.cstr("server_version") + wire.cstr(SERVER_VERSION))


# ---- the startup --------------------------------------------------------------------------------


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


# ---- the logins the emulator checks itself --------------------------------------------------


async def accept_temporary_user(
    client: wire.MessageStream,
    client_writer: asyncio.StreamWriter,
    user: str,
    credentials: CredentialRegistry | None,
    backend_login: tuple[str, str] | None,
) -> BackendLogin | None:
    """Ask for the password with MD5, as Redshift does; accepted if it is one minted for `user`, unexpired.

    Returns how to log in to PostgreSQL for the client, or None once the client has been refused.
    """
    answer, salt = await _ask_md5(client, client_writer)
    valid, expired = credentials.candidates(user) if credentials is not None else ([], [])
    if backend_login is None:
        log.debug("temporary user %r refused: the emulator has no backend login of its own", user)
    elif any(md5_matches(answer, user, minted.password, salt) for minted in valid):
        log.debug("temporary user %r authenticated", user)
        return BackendLogin(*backend_login)
    elif any(md5_matches(answer, user, minted.password, salt) for minted in expired):
        log.debug("temporary user %r refused: the credential had expired", user)
    else:
        log.debug("temporary user %r refused: no credential minted for it matches", user)
    await refuse_login(client_writer, f'password authentication failed for user "{user}"', "28P01")
    return None


async def accept_user(
    client: wire.MessageStream,
    client_writer: asyncio.StreamWriter,
    user: str,
    logins: dict[str, str],
    *,
    over_tls: bool,
) -> BackendLogin | None:
    """Any other user, as Redshift asks: MD5, checked against the cluster's users the emulator knows; over
    TLS, a user it does not know may send the password in clear, for PostgreSQL to judge. Returns how to
    log in to PostgreSQL for the client, or None once the client has been refused."""
    if user in logins:
        answer, salt = await _ask_md5(client, client_writer)
        if md5_matches(answer, user, logins[user], salt):
            return BackendLogin(user, logins[user])
    elif over_tls:
        client_writer.write(wire.message(b"R", struct.pack("!I", AUTH_CLEARTEXT)))
        await client_writer.drain()
        return BackendLogin(user, (await _password_message(client)).decode("utf-8", errors="replace"))
    else:
        await _ask_md5(client, client_writer)  # asked, as for anyone, and refused: nobody to check it against
    log.debug("user %r refused: wrong password or unknown user", user)
    await refuse_login(client_writer, f'password authentication failed for user "{user}"', "28P01")
    return None


async def _ask_md5(client: wire.MessageStream, client_writer: asyncio.StreamWriter) -> tuple[bytes, bytes]:
    """AuthenticationMD5Password with a fresh salt; the client's answer and the salt."""
    salt = secrets.token_bytes(4)
    client_writer.write(wire.message(b"R", struct.pack("!I", AUTH_MD5) + salt))
    await client_writer.drain()
    return await _password_message(client), salt


async def _password_message(client: wire.MessageStream) -> bytes:
    kind, payload = await client.read()
    if kind != ord("p"):
        raise wire.ProtocolError(f"expected a PasswordMessage, got message type {chr(kind)!r}")
    return payload.split(b"\0", 1)[0]


async def refuse_login(client_writer: asyncio.StreamWriter, text: str, code: str) -> None:
    client_writer.write(wire.error_response(text, code=code, severity="FATAL"))
    await client_writer.drain()
