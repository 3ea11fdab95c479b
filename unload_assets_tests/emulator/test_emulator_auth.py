"""The emulator's password helpers, without servers: the MD5 answer and the SCRAM-SHA-256 client."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from unload_assets_local.emulator.login import passwords

# RFC 7677 section 3: user "user", password "pencil".
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def request(code: int, body: bytes = b"") -> bytes:
    """An AuthenticationRequest payload as PostgreSQL sends it."""
    return struct.pack("!I", code) + body


def test_scram_client_follows_rfc_7677():
    client = passwords.ScramClient("pencil", user="user", nonce=CLIENT_NONCE)
    assert client.first_message() == CLIENT_FIRST
    assert client.final_message(SERVER_FIRST) == CLIENT_FINAL
    client.verify(SERVER_FINAL)
    assert client.verified


def test_scram_client_refuses_a_server_that_does_not_know_the_password():
    client = passwords.ScramClient("pencil", user="user", nonce=CLIENT_NONCE)
    client.final_message(SERVER_FIRST)
    with pytest.raises(passwords.ScramError, match="signature"):
        client.verify(b"v=" + base64.b64encode(b"\0" * 32))
    assert not client.verified


def test_scram_client_refuses_a_nonce_that_is_not_its_own():
    client = passwords.ScramClient("pencil", user="user", nonce=CLIENT_NONCE)
    with pytest.raises(passwords.ScramError, match="nonce"):
        client.final_message(b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_scram_errors_never_carry_the_password():
    client = passwords.ScramClient("pencil", nonce=CLIENT_NONCE)
    with pytest.raises(passwords.ScramError) as refused:
        client.verify(b"e=invalid-proof")
    assert "pencil" not in str(refused.value)


def test_backend_login_runs_the_whole_sasl_exchange():
    login = passwords.BackendLogin("user", "pencil", nonce=CLIENT_NONCE)
    initial = login.answer(request(passwords.AUTH_SASL, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"))
    # PostgreSQL ignores the SCRAM user name (the startup packet's counts), so none is sent, as libpq does.
    first = b"n,,n=,r=" + CLIENT_NONCE.encode()
    body = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
    assert initial == b"p" + struct.pack("!i", 4 + len(body)) + body
    final = login.answer(request(passwords.AUTH_SASL_CONTINUE, SERVER_FIRST))
    assert final is not None and final.startswith(b"p") and b",p=" in final
    with pytest.raises(passwords.ScramError):
        login.answer(request(passwords.AUTH_OK))  # Ok before the server proved itself
    assert not login.authenticated


def test_backend_login_answers_md5_and_cleartext():
    login = passwords.BackendLogin("unload", "secret")
    md5 = login.answer(request(passwords.AUTH_MD5, b"salt"))
    assert (
        md5
        == b"p"
        + struct.pack("!i", 4 + 36)
        + passwords.md5_answer("unload", "secret", b"salt").encode()
        + b"\0"
    )
    assert login.answer(request(passwords.AUTH_CLEARTEXT)) == b"p\0\0\0\x0bsecret\0"
    assert login.answer(request(passwords.AUTH_OK)) is None and login.authenticated


def test_backend_login_refuses_what_it_cannot_answer():
    with pytest.raises(passwords.AuthError, match="SCRAM-SHA-256"):
        passwords.BackendLogin("u", "p").answer(request(passwords.AUTH_SASL, b"OAUTHBEARER\0\0"))
    with pytest.raises(passwords.AuthError, match="unsupported"):
        passwords.BackendLogin("u", "p").answer(request(7))  # GSSAPI


def test_md5_answer_is_what_postgresql_computes():
    # md5('secret' || 'unload') = the role's stored hash; then md5(that hex || salt).
    answer = passwords.md5_answer("unload", "secret", b"\x01\x02\x03\x04")
    stored = hashlib.md5(b"secretunload").hexdigest()
    assert answer == "md5" + hashlib.md5(stored.encode() + b"\x01\x02\x03\x04").hexdigest()
    assert passwords.md5_matches(answer.encode(), "unload", "secret", b"\x01\x02\x03\x04")
    assert not passwords.md5_matches(answer.encode(), "unload", "secret", b"\x01\x02\x03\x05")
    assert not passwords.md5_matches(answer.encode(), "IAM:unload", "secret", b"\x01\x02\x03\x04")


def test_saslprep_maps_spaces_and_leaves_invalid_passwords_alone():
    assert passwords.saslprep("pencil") == "pencil"
    assert passwords.saslprep("I\u00adX") == "IX"  # soft hyphen: mapped to nothing
    assert passwords.saslprep("a\u00a0b") == "a b"  # no-break space: a space
    assert passwords.saslprep("\u2168") == "IX"  # NFKC
    assert passwords.saslprep("a\u0007b") == "a\u0007b"  # prohibited: used as given, as libpq does
