"""The emulator greets clients as Redshift does, so clients nobody here wrote connect: Amazon's own
`redshift_connector`, psycopg 3, psycopg2 and psql.

Redshift asks for an MD5 password (never PostgreSQL's SCRAM, whose mechanism list redshift_connector
mis-parses), ignores the startup parameters its drivers always send (`client_protocol_version`,
`driver_version`, `os_version`, which PostgreSQL refuses), and reports `server_version` 8.0.2 (the
driver parses it as a version). The stack's emulator, with TLS, as `make run` and the tests use it.
"""

from __future__ import annotations

import os
import subprocess

import psycopg
import psycopg2
import pytest
import redshift_connector

from unload_assets.local.emulator.catalog import REDSHIFT_VERSION
from unload_assets.local.emulator.startup import REDSHIFT_DRIVER_PARAMETERS, for_postgres

pytestmark = pytest.mark.stack

PSQL = "/usr/bin/psql"


def _redshift_connector(env: dict[str, str], **options):
    return redshift_connector.connect(
        host="127.0.0.1", port=int(env["REDSHIFT_PORT"]), database=env["REDSHIFT_DATABASE"],
        user=env["REDSHIFT_USER"], password=env["REDSHIFT_PASSWORD"], timeout=10, **options,
    )  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [{"ssl": False}, {"ssl": True, "sslmode": "verify-full"}],
    ids=["plain", "tls-verify-full"],
)
def test_amazons_driver_connects_and_reads_a_redshift_version(stack_env, options, monkeypatch):
    if options.get("sslmode") == "verify-full":
        # redshift_connector trusts Amazon's CA bundle and OpenSSL's default locations, which
        # SSL_CERT_FILE names: the stack's CA, as a machine that trusts it would be set up.
        monkeypatch.setenv("SSL_CERT_FILE", stack_env["REDSHIFT_SSLROOTCERT"])
    conn = _redshift_connector(stack_env, **options)
    try:
        cursor = conn.cursor()
        cursor.execute("select version(), count(*) from public.customers where customer_id <= 3")
        version, count = cursor.fetchone()
        assert version == REDSHIFT_VERSION and count == 3
        assert (b"server_version", b"8.0.2") in conn.parameter_statuses
    finally:
        conn.close()


def test_a_wrong_password_is_refused_in_redshifts_words(stack_env):
    with pytest.raises(
        redshift_connector.ProgrammingError, match="28P01.*password authentication failed for user"
    ):
        _redshift_connector({**stack_env, "REDSHIFT_PASSWORD": "not-the-password"}, ssl=False)
    with pytest.raises(psycopg2.OperationalError, match='password authentication failed for user "nobody"'):
        psycopg2.connect(
            host="127.0.0.1", port=int(stack_env["REDSHIFT_PORT"]), dbname=stack_env["REDSHIFT_DATABASE"],
            user="nobody", password="x", sslmode="disable",
        )  # fmt: skip


@pytest.mark.parametrize("sslmode", ["disable", "verify-full"])
def test_psycopg3_psycopg2_and_psql_still_connect(stack_env, sslmode):
    dsn = (
        f"host=127.0.0.1 port={stack_env['REDSHIFT_PORT']} dbname={stack_env['REDSHIFT_DATABASE']} "
        f"user={stack_env['REDSHIFT_USER']} password={stack_env['REDSHIFT_PASSWORD']} sslmode={sslmode} "
        f"sslrootcert={stack_env['REDSHIFT_SSLROOTCERT']}"
    )
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.execute("select version()").fetchone() == (REDSHIFT_VERSION,)
        assert conn.info.parameter_status("server_version") == "8.0.2"
    with psycopg2.connect(dsn, connect_timeout=10) as conn2, conn2.cursor() as cur:
        cur.execute("show server_version")  # the server's own setting; only the reported one changes
        assert cur.fetchone() is not None
        assert conn2.server_version == 80002
    conn2.close()
    out = subprocess.run(
        [PSQL, dsn, "-tAc", "select version()"], capture_output=True, text=True, timeout=30,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == REDSHIFT_VERSION


def test_driver_parameters_are_ignored_and_postgres_settings_pass():
    settings = frozenset({"application_name", "datestyle", "timezone", "client_encoding"})
    params = {
        "user": "u", "database": "d", "application_name": "a", "DateStyle": "ISO",
        **dict.fromkeys(REDSHIFT_DRIVER_PARAMETERS, "1"), "some_future_driver_field": "x",
    }  # fmt: skip
    assert for_postgres(params, settings) == {"user": "u", "database": "d", "application_name": "a",
                                              "DateStyle": "ISO"}  # fmt: skip
    # Without the list of PostgreSQL's settings, only the known driver parameters are left out.
    assert "some_future_driver_field" in for_postgres(params, None)
    assert not REDSHIFT_DRIVER_PARAMETERS & set(for_postgres(params, None))
