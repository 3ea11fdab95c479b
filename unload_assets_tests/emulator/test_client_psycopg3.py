"""psycopg 3, unmodified, with COPY from S3: prepared statements (named, through Parse/Bind/Execute), a
bound parameter (refused as Redshift's parser refuses it; bound on the client side it runs), and a
pipeline mixing COPY, UNLOAD and selects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from unload_assets_tests.support.emulator_helpers import psycopg3_to

pytestmark = pytest.mark.stack


@pytest.fixture()
def conn(emulator, pg_cluster) -> Iterator[psycopg.Connection]:
    connection = psycopg3_to(emulator, pg_cluster)
    yield connection
    connection.close()


@pytest.fixture()
def unloaded(conn, s3_server) -> str:
    """An UNLOAD of three rows as CSV: its S3 prefix."""
    to = f"s3://{s3_server.bucket}/psycopg3/{uuid.uuid4().hex}/"
    conn.execute(
        f"UNLOAD ('select * from (values (1, ''one''), (2, ''two''), (3, null)) v') TO '{to}' "
        "IAM_ROLE default CSV PARALLEL OFF"
    )
    return to


def _table(conn: psycopg.Connection) -> str:
    name = f"p3_{uuid.uuid4().hex[:8]}"
    conn.execute(f"create table {name} (id int, name varchar(10))")
    return name


def test_a_prepared_copy_from_s3_runs_each_time_it_is_executed(conn, unloaded):
    table = _table(conn)
    copy = f"COPY {table} FROM '{unloaded}' IAM_ROLE default CSV"
    for _ in range(2):  # the second execution reuses the named prepared statement
        conn.execute(copy, prepare=True)
    assert conn.execute(f"select count(*), count(distinct id) from {table}").fetchone() == (6, 3)


def test_a_bound_parameter_in_copy_or_unload_is_refused_as_redshift_refuses_it(conn, unloaded):
    table = _table(conn)
    refused = [
        (f"COPY {table} FROM %s IAM_ROLE default CSV", [unloaded]),
        ("UNLOAD (%s) TO 's3://bucket/prefix/' IAM_ROLE default", ["select 1"]),
    ]
    for sql, params in refused:
        with pytest.raises(psycopg.errors.SyntaxError) as error:
            conn.execute(sql, params, prepare=True)
        assert error.value.sqlstate == "42601"  # Redshift's, not PostgreSQL's 42P18
        assert error.value.diag.message_primary == 'syntax error at or near "$1"'
        assert error.value.diag.statement_position == str(sql.index("%s") + 1)
    assert conn.execute("select 1").fetchone() == (1,)  # the session goes on
    # Bound on the client side, the value is a literal in the statement: Redshift runs that.
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(f"COPY {table} FROM %s IAM_ROLE default CSV", [unloaded])
    assert conn.execute(f"select id, name from {table} order by id").fetchall() == [
        (1, "one"),
        (2, "two"),
        (3, None),
    ]


def test_a_pipeline_mixing_copy_unload_and_selects(conn, unloaded, s3_server):
    table = _table(conn)
    again = f"s3://{s3_server.bucket}/psycopg3/{uuid.uuid4().hex}/"
    with conn.pipeline():
        conn.execute(f"COPY {table} FROM '{unloaded}' IAM_ROLE default CSV")
        counted = conn.execute(f"select count(*) from {table}")
        conn.execute(f"UNLOAD ('select * from {table} where id > 1') TO '{again}' IAM_ROLE default CSV")
        last = conn.execute("select pg_last_unload_count()")
        conn.execute(f"COPY {table} FROM '{again}' IAM_ROLE default CSV")
        total = conn.execute(f"select count(*) from {table}")
    assert (counted.fetchone(), last.fetchone(), total.fetchone()) == ((3,), (2,), (5,))
    # A failing COPY in a pipeline discards what follows up to the sync, as PostgreSQL does.
    with pytest.raises(psycopg.errors.InternalError, match="does not exist"), conn.pipeline():
        conn.execute(f"COPY {table} FROM 's3://{s3_server.bucket}/no/such/prefix/' IAM_ROLE default CSV")
        conn.execute(f"insert into {table} values (99, 'skipped')")
    assert conn.execute(f"select count(*) from {table} where id = 99").fetchone() == (0,)
