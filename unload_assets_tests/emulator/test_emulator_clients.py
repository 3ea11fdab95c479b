"""Clients nobody here wrote, against the emulator: Amazon's own `redshift_connector`, psycopg 3 (prepared
statements, pipeline mode), psycopg2 and psql connect, and UNLOAD through the extended protocol too.

Redshift asks for an MD5 password (never PostgreSQL's SCRAM, whose mechanism list redshift_connector
mis-parses), ignores the startup parameters its drivers always send (`client_protocol_version`,
`driver_version`, `os_version`, which PostgreSQL refuses), and reports `server_version` 8.0.2 (the
driver parses it as a version). The stack's emulator, with TLS, as `make run` and the tests use it.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import psycopg
import psycopg2
import pytest
import redshift_connector
from unload_assets_local.emulator.catalog.system_tables import REDSHIFT_VERSION
from unload_assets_local.emulator.login.startup import REDSHIFT_DRIVER_PARAMETERS, for_postgres

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


def _to(name: str) -> str:
    return f"s3://unload-local/clients/{name}/{uuid.uuid4().hex}/"


def _staged(s3, to: str) -> list[str]:
    prefix = to[len("s3://unload-local/") :]
    return sorted(
        o["Key"][len(prefix) :]
        for o in s3.list_objects_v2(Bucket="unload-local", Prefix=prefix).get("Contents", [])
    )


@pytest.mark.parametrize("autocommit", [True, False])
def test_amazons_driver_creates_a_table_and_unloads_it(stack_env, s3, autocommit):
    """redshift_connector sends everything through the extended protocol (Parse/Bind/Execute/Sync)."""
    conn = _redshift_connector(stack_env, ssl=False)
    conn.autocommit = autocommit
    table, to = f"rc_{uuid.uuid4().hex[:8]}", _to("redshift_connector")
    try:
        cursor = conn.cursor()
        cursor.execute(f"create table {table} (id int, name varchar(20))")
        cursor.execute(f"insert into {table} values (1, 'one'), (2, 'two'), (3, 'three')")
        cursor.execute(
            f"UNLOAD ('select * from {table} order by id') TO '{to}' IAM_ROLE default CSV PARALLEL OFF"
        )
        cursor.execute("select pg_last_unload_count()")
        assert cursor.fetchone() == [3]
        if not autocommit:
            conn.commit()
        assert _staged(s3, to) == ["000"]
        body = s3.get_object(Bucket="unload-local", Key=to[len("s3://unload-local/") :] + "000")[
            "Body"
        ].read()
        assert body == b"1,one\n2,two\n3,three\n"
        cursor.execute(f"drop table {table}")
        if not autocommit:
            conn.commit()
    finally:
        conn.close()


def test_amazons_driver_sees_a_failing_unload_as_redshifts_error(stack_env):
    conn = _redshift_connector(stack_env, ssl=False)
    conn.autocommit = True
    try:
        cursor = conn.cursor()
        with pytest.raises(redshift_connector.ProgrammingError, match="no_such_table_rc") as error:
            cursor.execute(
                f"UNLOAD ('select * from no_such_table_rc') TO '{_to('rc_error')}' IAM_ROLE default"
            )
        assert "PL/pgSQL" not in str(error.value) and "42P01" in str(error.value)
        cursor.execute("select 1")  # the session goes on
        assert cursor.fetchone() == [1]
    finally:
        conn.close()


def test_psycopg3_prepared_and_pipelined_unloads(stack_env, s3):
    dsn = (
        f"host=127.0.0.1 port={stack_env['REDSHIFT_PORT']} dbname={stack_env['REDSHIFT_DATABASE']} "
        f"user={stack_env['REDSHIFT_USER']} password={stack_env['REDSHIFT_PASSWORD']} sslmode=disable"
    )
    prepared, first, second, skipped = (
        _to(n) for n in ("psycopg_prepared", "pipeline_1", "pipeline_2", "skipped")
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UNLOAD ('select 1') TO '{prepared}' IAM_ROLE default PARALLEL OFF", prepare=True)
        assert conn.execute("select pg_last_unload_count()").fetchone() == (1,)
        with conn.pipeline():
            conn.execute(f"UNLOAD ('select 1 union all select 2') TO '{first}' IAM_ROLE default PARALLEL OFF")
            count = conn.execute("select pg_last_unload_count()")
            conn.execute(f"UNLOAD ('select 3') TO '{second}' IAM_ROLE default PARALLEL OFF")
        assert count.fetchone() == (2,)
        # In a pipeline, a failing UNLOAD discards what follows up to the next sync, as PostgreSQL does.
        with pytest.raises(psycopg.errors.UndefinedTable), conn.pipeline():
            conn.execute(f"UNLOAD ('select * from no_such_pipelined') TO '{_to('bad')}' IAM_ROLE default")
            conn.execute(f"UNLOAD ('select 4') TO '{skipped}' IAM_ROLE default PARALLEL OFF")
        assert conn.execute("select 8").fetchone() == (8,)
    assert [_staged(s3, to) for to in (prepared, first, second, skipped)] == [["000"], ["000"], ["000"], []]


def _psql(stack_env: dict[str, str], sql: str) -> subprocess.CompletedProcess[str]:
    dsn = (
        f"host=127.0.0.1 port={stack_env['REDSHIFT_PORT']} dbname={stack_env['REDSHIFT_DATABASE']} "
        f"user={stack_env['REDSHIFT_USER']} password={stack_env['REDSHIFT_PASSWORD']} sslmode=disable"
    )
    return subprocess.run([PSQL, dsn, "-tAX", "-c", sql], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("where", ["first", "middle", "last", "in BEGIN/COMMIT"])
def test_a_batch_runs_unload_wherever_it_stands(stack_env, s3, where):
    to = _to(f"batch_{where.split()[0].lower()}")
    unload = f"UNLOAD ('select 1 union all select 2') TO '{to}' IAM_ROLE default PARALLEL OFF"
    batch = {
        "first": f"{unload}; select pg_last_unload_count()",
        "middle": f"select 'before'; {unload}; select pg_last_unload_count()",
        "last": f"select 'before'; {unload}",
        "in BEGIN/COMMIT": f"BEGIN; {unload}; COMMIT; select pg_last_unload_count()",
    }[where]
    out = _psql(stack_env, batch)  # psql -c sends the whole text as one simple Query
    assert out.returncode == 0, out.stderr
    assert "UNLOAD completed, 2 record(s) unloaded successfully." in out.stderr
    if where != "last":  # psql prints the last statement's result
        assert out.stdout.split()[-1] == "2"
    assert _staged(s3, to) == ["000"]


def test_a_failing_statement_stops_the_batch_and_rolls_back_its_implicit_transaction(stack_env, s3):
    table, to, after = f"batch_{uuid.uuid4().hex[:8]}", _to("batch_fails"), _to("batch_after")
    conn = psycopg2.connect(
        host="127.0.0.1", port=int(stack_env["REDSHIFT_PORT"]), dbname=stack_env["REDSHIFT_DATABASE"],
        user=stack_env["REDSHIFT_USER"], password=stack_env["REDSHIFT_PASSWORD"], sslmode="disable",
    )  # fmt: skip
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.UndefinedTable, match="no_such_batch_table"):
                cur.execute(  # psycopg2 sends the statements as one simple Query
                    f"create table {table} (id int); insert into {table} values (1); "
                    f"UNLOAD ('select * from no_such_batch_table') TO '{to}' IAM_ROLE default; "
                    f"UNLOAD ('select 1') TO '{after}' IAM_ROLE default"
                )
            cur.execute("select count(*) from pg_tables where tablename = %s", (table,))
            assert cur.fetchone() == (0,)  # the create and the insert were rolled back with the batch
            # A batch that succeeds commits: the table and the UNLOAD of it are both there.
            cur.execute(
                f"create table {table} (id int); insert into {table} values (7); "
                f"UNLOAD ('select * from {table}') TO '{after}' IAM_ROLE default PARALLEL OFF"
            )
            cur.execute(f"select id from {table}")
            assert cur.fetchone() == (7,)
            cur.execute(f"drop table {table}")
    finally:
        conn.close()
    assert _staged(s3, to) == [] and _staged(s3, after) == ["000"]


EVERYDAY_REDSHIFT = [
    ("select nvl(null::int, 2), nvl2(null::int, 'set', 'unset'), len('abcd')", ("2", "unset", "4")),
    ("select dateadd(day, 1, '2026-01-31'::date)::date, "
     "datediff(day, '2026-01-01'::date, '2026-03-01'::date)", ("2026-02-01", "59")),
    ("select decode(2, 1, 'one', 2, 'two', 'other'), isnull(null::text, 'fallback')", ("two", "fallback")),
    ("select listagg(x, ',') within group (order by x) from (select 'b' x union all select 'a') s", ("a,b",)),
    ("select top 1 customer_id from public.customers order by customer_id", ("1",)),
    ("select getdate() is not null, sysdate is not null", ("true", "true")),
    ("select convert_timezone('UTC', 'America/New_York', '2026-07-01 12:00:00'::timestamp)::text",
     ("2026-07-01 08:00:00",)),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "expected"), EVERYDAY_REDSHIFT, ids=lambda v: str(v)[:40])
def test_everyday_redshift_sql_runs_through_both_protocols(stack_env, sql, expected):
    conn = psycopg2.connect(
        host="127.0.0.1", port=int(stack_env["REDSHIFT_PORT"]), dbname=stack_env["REDSHIFT_DATABASE"],
        user=stack_env["REDSHIFT_USER"], password=stack_env["REDSHIFT_PASSWORD"], sslmode="disable",
    )  # fmt: skip
    try:
        with conn.cursor() as cur:  # psycopg2: the simple protocol
            cur.execute(sql)
            row = cur.fetchone()
            assert tuple(str(v).lower() for v in row) == expected
    finally:
        conn.close()
    rc = _redshift_connector(stack_env, ssl=False)  # redshift_connector: the extended protocol
    try:
        cursor = rc.cursor()
        cursor.execute(sql)
        assert tuple(str(v).lower() for v in cursor.fetchone()) == expected
    finally:
        rc.close()


def test_create_table_with_redshift_table_design_and_unload_with_redshift_functions(stack_env, s3):
    table, to = f"design_{uuid.uuid4().hex[:8]}", _to("everyday")
    conn = _redshift_connector(stack_env, ssl=False)
    conn.autocommit = True
    try:
        cursor = conn.cursor()
        cursor.execute(
            f"create table {table} (id int identity(1,1) encode az64, name varchar(20) encode zstd, "
            "day date) diststyle key distkey(id) compound sortkey(id, day)"
        )
        cursor.execute(f"insert into {table} (name, day) values ('a', '2026-01-01'), (null, '2026-01-02')")
        cursor.execute(
            f"UNLOAD ('select id, nvl(name, ''none''), dateadd(day, 1, day)::date, sysdate is not null "
            f"from {table} order by id') TO '{to}' IAM_ROLE default CSV PARALLEL OFF"
        )
        body = s3.get_object(Bucket="unload-local", Key=to[len("s3://unload-local/") :] + "000")[
            "Body"
        ].read()
        assert body == b"1,a,2026-01-02,t\n2,none,2026-01-03,t\n"
        cursor.execute(f"drop table {table}")
    finally:
        conn.close()
