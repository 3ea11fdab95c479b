"""Passwords on the wire: the MD5 answer Redshift asks its clients for, and a SCRAM-SHA-256 client.

The emulator authenticates Redshift's temporary IAM users itself (MD5, as Redshift does) and then logs
in to PostgreSQL with a login of its own, answering whatever PostgreSQL asks: SCRAM-SHA-256 (RFC 5802,
RFC 7677; no channel binding, the backend is on loopback without TLS), MD5 or a cleartext password.
Nothing here does I/O, and no password or proof ever goes into an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import struct
import unicodedata

from unload_assets_local.emulator.protocol import wire

SCRAM_SHA_256 = "SCRAM-SHA-256"
GS2_HEADER = "n,,"  # no channel binding, no authorization identity
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5 = 0, 3, 5
AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 10, 11, 12
_U32_AT = struct.Struct("!I").unpack_from
_I32 = struct.Struct("!i")


class AuthError(Exception):
    """PostgreSQL asked for something the emulator cannot answer, or did not prove who it is."""


class ScramError(AuthError):
    pass


# ---- MD5 (what Redshift asks a client for) -------------------------------------------------------


def md5_answer(user: str, password: str, salt: bytes) -> str:
    """The PasswordMessage text for AuthenticationMD5Password: 'md5' + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def md5_matches(answer: bytes, user: str, password: str, salt: bytes) -> bool:
    """Whether a client's answer proves `password`; in constant time, so timing leaks nothing."""
    return hmac.compare_digest(answer, md5_answer(user, password, salt).encode())


# ---- SCRAM-SHA-256 (what PostgreSQL asks the emulator for) ----------------------------------------


def saslprep(password: str) -> str:
    """RFC 4013, as libpq applies it: a password that is not a valid SASLprep string is used unchanged."""
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared or any(_prohibited(c) for c in prepared) or not _bidi_ok(prepared):
        return password
    return prepared


# RFC 4013 section 2.3 (prohibited output) and 2.5 (unassigned code points).
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


def _prohibited(c: str) -> bool:
    return any(table(c) for table in _PROHIBITED)


def _bidi_ok(text: str) -> bool:
    """RFC 3454 section 6: right-to-left text must not mix in left-to-right and must start and end so."""
    if not any(stringprep.in_table_d1(c) for c in text):
        return True
    rtl_ends = stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])
    return rtl_ends and not any(stringprep.in_table_d2(c) for c in text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _attributes(message: bytes) -> dict[str, str]:
    """A SCRAM message's `a=value` pairs."""
    pairs = (part.split("=", 1) for part in message.decode().split(","))
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


class ScramClient:
    """One SCRAM-SHA-256 exchange: client-first, client-final, then the server's signature checked."""

    def __init__(self, password: str, *, user: str = "", nonce: str | None = None) -> None:
        # PostgreSQL ignores the SCRAM user name (the startup packet's counts), so libpq sends none.
        self._password = saslprep(password)
        self._nonce = nonce or _b64(secrets.token_bytes(18))
        self._first_bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={self._nonce}"
        self._server_signature: bytes | None = None
        self.verified = False

    def first_message(self) -> bytes:
        return (GS2_HEADER + self._first_bare).encode()

    def final_message(self, server_first: bytes) -> bytes:
        """The client-final-message, with the proof that we know the password."""
        attrs = _attributes(server_first)
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("the server's nonce does not extend ours")
        if not salt or not iterations.isdigit() or int(iterations) < 1 or "m" in attrs:
            raise ScramError("malformed server-first-message")
        salted = hashlib.pbkdf2_hmac(
            "sha256", self._password.encode(), base64.b64decode(salt), int(iterations)
        )
        client_key = _hmac(salted, b"Client Key")
        without_proof = f"c={_b64(GS2_HEADER.encode())},r={nonce}"
        auth_message = f"{self._first_bare},{server_first.decode()},{without_proof}".encode()
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode()

    def verify(self, server_final: bytes) -> None:
        """Check the server knows the password too (it could otherwise be anyone); ScramError if not."""
        attrs = _attributes(server_final)
        if "e" in attrs:
            raise ScramError(f"the server refused the exchange: {attrs['e']}")
        signature = base64.b64decode(attrs.get("v", ""))
        if self._server_signature is None or not hmac.compare_digest(signature, self._server_signature):
            raise ScramError("the server's SCRAM signature does not match")
        self.verified = True


# ---- logging in to PostgreSQL ------------------------------------------------------------------------


def password_message(text: str) -> bytes:
    return wire.message(b"p", wire.cstr(text))


class BackendLogin:
    """Answers PostgreSQL's authentication requests with the emulator's own user and password."""

    def __init__(self, user: str, password: str, *, nonce: str | None = None) -> None:
        self.user = user
        self._password = password
        self._nonce = nonce
        self._scram: ScramClient | None = None
        self.authenticated = False  # PostgreSQL said AuthenticationOk

    def answer(self, payload: bytes) -> bytes | None:
        """The message for one AuthenticationRequest payload; None when PostgreSQL expects nothing."""
        code, body = _U32_AT(payload, 0)[0], payload[4:]
        if code == AUTH_OK:
            if self._scram is not None and not self._scram.verified:
                raise ScramError("the server accepted us without proving it knows the password")
            self.authenticated = True
            return None
        if code == AUTH_CLEARTEXT:
            return password_message(self._password)
        if code == AUTH_MD5:
            return password_message(md5_answer(self.user, self._password, body[:4]))
        if code == AUTH_SASL:
            return self._sasl_initial(body)
        if code in (AUTH_SASL_CONTINUE, AUTH_SASL_FINAL) and self._scram is not None:
            if code == AUTH_SASL_FINAL:
                self._scram.verify(body)
                return None
            return wire.message(b"p", self._scram.final_message(body))
        raise AuthError(f"unsupported authentication request {code}")

    def _sasl_initial(self, body: bytes) -> bytes:
        """SASLInitialResponse for SCRAM-SHA-256 (the -PLUS variant needs TLS, which loopback lacks)."""
        if SCRAM_SHA_256.encode() not in body.split(b"\0"):
            raise AuthError(f"PostgreSQL offers no {SCRAM_SHA_256}")
        self._scram = ScramClient(self._password, nonce=self._nonce)
        first = self._scram.first_message()
        return wire.message(b"p", wire.cstr(SCRAM_SHA_256) + _I32.pack(len(first)) + first)
