"""The logins the emulator checks itself, asking for the password with MD5 as Redshift does: temporary
IAM users, against the credentials minted and not expired; and, when it is given the cluster's users
(`logins`), every other user. Each returns how to log in to PostgreSQL for the client, or None once the
client has been refused.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct

from unload_assets_local.emulator import wire
from unload_assets_local.emulator.auth import AUTH_CLEARTEXT, AUTH_MD5, BackendLogin, md5_matches
from unload_assets_local.emulator.credentials import CredentialRegistry

log = logging.getLogger(__name__)


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
