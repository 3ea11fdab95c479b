"""Redshift's temporary IAM users through the emulator: psycopg2 -> emulator (MD5, minted credentials)
-> real PostgreSQL (SCRAM, the emulator's own login). Refusals read as Redshift's.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from unload_assets_local.emulator.login.credentials import CredentialRegistry
from unload_assets_local.emulator.server import RedshiftEmulator

from unload_assets_tests.support.emulator_helpers import PSQL, connect, emulator_for, objects, unload


class Clock:
    """time.time(), moved forward by the tests that need a credential to expire."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def iam_emulator(pg_cluster, s3_server, clock) -> Iterator[RedshiftEmulator]:
    emu = emulator_for(
        pg_cluster,
        s3_server,
        credentials=CredentialRegistry(clock),
        backend_login=(pg_cluster.user, pg_cluster.password),
    ).start()
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def _present(clock):
    yield
    clock.ahead = 0.0


def mint(emulator: RedshiftEmulator, user: str, *, lifetime: float = 900) -> str:
    password = secrets.token_urlsafe(24)
    emulator.credentials.record(user, password, time.time() + lifetime)
    return password


def login(emulator: RedshiftEmulator, pg_cluster, user: str, password: str):
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=emulator.port,
        dbname=pg_cluster.database,
        user=user,
        password=password,
        sslmode="disable",
        connect_timeout=10,
    )
    conn.autocommit = True
    return conn


def can_log_in(emulator: RedshiftEmulator, pg_cluster, user: str, password: str) -> bool:
    try:
        login(emulator, pg_cluster, user, password).close()
    except psycopg2.OperationalError as exc:
        assert f'password authentication failed for user "{user}"' in str(exc)
        return False
    return True


def refused(user: str):
    return pytest.raises(
        psycopg2.OperationalError, match=re.escape(f'password authentication failed for user "{user}"')
    )


def test_a_minted_credential_logs_in_queries_and_unloads(iam_emulator, pg_cluster, s3_server):
    password = mint(iam_emulator, "IAM:alice")
    conn = login(iam_emulator, pg_cluster, "IAM:alice", password)
    try:
        with conn.cursor() as cur:
            cur.execute("select 1, current_user")
            assert cur.fetchone() == (1, pg_cluster.user)  # PostgreSQL sees the emulator's own login
        to = f"s3://{s3_server.bucket}/iam-login/{uuid.uuid4().hex}/"
        unload(conn, "select g from generate_series(1, 5) g", to, "PARALLEL OFF")
        assert objects(s3_server, to) == {"000": b"1\n2\n3\n4\n5\n"}
    finally:
        conn.close()


def test_a_wrong_password_is_refused(iam_emulator, pg_cluster):
    mint(iam_emulator, "IAM:bob")
    with refused("IAM:bob"):
        login(iam_emulator, pg_cluster, "IAM:bob", "not-the-minted-one")


def test_an_unknown_temporary_user_is_refused(iam_emulator, pg_cluster):
    password = mint(iam_emulator, "IAM:carol")
    with refused("IAMA:carol"):
        login(iam_emulator, pg_cluster, "IAMA:carol", password)  # minted for IAM:carol, not IAMA:carol


def test_an_expired_credential_is_refused(iam_emulator, pg_cluster):
    password = mint(iam_emulator, "IAMR:dave", lifetime=-1)
    with refused("IAMR:dave"):
        login(iam_emulator, pg_cluster, "IAMR:dave", password)


def test_two_credentials_for_one_user_each_work_until_they_expire(iam_emulator, pg_cluster, clock):
    first = mint(iam_emulator, "IAM:erin", lifetime=300)
    second = mint(iam_emulator, "IAM:erin", lifetime=900)
    assert can_log_in(iam_emulator, pg_cluster, "IAM:erin", first)
    assert can_log_in(iam_emulator, pg_cluster, "IAM:erin", second)
    clock.ahead = 600
    assert not can_log_in(iam_emulator, pg_cluster, "IAM:erin", first)
    assert can_log_in(iam_emulator, pg_cluster, "IAM:erin", second)
    clock.ahead = 1200
    assert not can_log_in(iam_emulator, pg_cluster, "IAM:erin", second)


def test_a_password_user_logs_in_as_before(iam_emulator, pg_cluster):
    conn = connect(iam_emulator, pg_cluster)
    try:
        with conn.cursor() as cur:
            cur.execute("select current_user")
            assert cur.fetchone() == (pg_cluster.user,)
    finally:
        conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        login(iam_emulator, pg_cluster, pg_cluster.user, "wrong")


def test_without_a_backend_login_temporary_users_are_refused(emulator, pg_cluster):
    password = mint(emulator, "IAM:frank")
    with refused("IAM:frank"):
        login(emulator, pg_cluster, "IAM:frank", password)


def test_the_minted_password_never_reaches_the_log(iam_emulator, pg_cluster, clock, caplog):
    caplog.set_level(logging.DEBUG)
    password = mint(iam_emulator, "IAM:grace", lifetime=300)
    login(iam_emulator, pg_cluster, "IAM:grace", password).close()
    with refused("IAM:grace"):
        login(iam_emulator, pg_cluster, "IAM:grace", password + "x")
    clock.ahead = 600
    with refused("IAM:grace"):
        login(iam_emulator, pg_cluster, "IAM:grace", password)
    messages = [record.getMessage() for record in caplog.records]
    assert any("IAM:grace" in message and "expired" in message for message in messages)
    assert not [message for message in messages if password in message]
    assert password not in caplog.text


def test_a_cancel_reaches_a_temporary_users_backend(iam_emulator, pg_cluster):
    # psql, not psycopg2: psycopg2's cancel() holds the GIL while it waits for the server, which would
    # deadlock against an emulator running in this same process.
    password = mint(iam_emulator, "IAM:heidi")
    args = [PSQL, "-X", "-h", "127.0.0.1", "-p", str(iam_emulator.port), "-U", "IAM:heidi"]
    args += ["-d", pg_cluster.database, "-c", "select pg_sleep(20)"]
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "disable"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # psql cancels with the BackendKeyData the emulator relayed
    _, err = proc.communicate(timeout=10)  # well before the 20 s sleep could end by itself
    assert "canceling statement due to user request" in err


def test_postgresql_refusing_the_emulators_own_login_reaches_the_client(pg_cluster, s3_server):
    with RedshiftEmulator(
        pg_host="127.0.0.1",
        pg_port=pg_cluster.port,
        s3_endpoint_url=s3_server.endpoint_url,
        listen_port=0,
        superuser_dsn=pg_cluster.dsn(superuser=True),
        backend_login=(pg_cluster.user, "not-its-password"),
    ) as emu:
        password = mint(emu, "IAM:ivan")
        with refused(pg_cluster.user):  # PostgreSQL's words, about the emulator's own user
            login(emu, pg_cluster, "IAM:ivan", password)
