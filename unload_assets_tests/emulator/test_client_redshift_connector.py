"""Amazon's redshift_connector, unmodified, beyond connect and UNLOAD (`test_emulator_clients.py`): its
metadata calls (which read `svv_all_tables`, `svv_columns`, `svv_external_schemas` and query shapes only
Redshift's parser accepts), `write_dataframe`, `fetch_dataframe`, and COPY through a cursor (the
extended protocol), with autocommit on and off."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import redshift_connector

from unload_assets_tests.support.emulator_helpers import redshift_connector_to

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def schema(emulator, pg_cluster) -> Iterator[str]:
    name = f"rc_{uuid.uuid4().hex[:8]}"
    conn = redshift_connector_to(emulator, pg_cluster)
    cursor = conn.cursor()
    cursor.execute(f"create schema {name}")
    cursor.execute(
        f"create table {name}.events (id integer primary key, kind varchar(20) not null, at timestamp) "
        "diststyle even sortkey(at)"
    )
    cursor.execute(f"create view {name}.kinds as select distinct kind from {name}.events")
    conn.close()
    yield name


@pytest.fixture()
def conn(emulator, pg_cluster) -> Iterator[redshift_connector.Connection]:
    connection = redshift_connector_to(emulator, pg_cluster)
    yield connection
    connection.close()


def test_get_tables(conn, schema):
    # PostgreSQL's indexes (the primary key's) are listed too, as INDEX: Redshift has none, and the
    # driver's catalog-query path does not apply `types`.
    tables = conn.cursor().get_tables(schema_pattern=schema)
    assert sorted((row[1], row[2], row[3]) for row in tables if row[3] != "INDEX") == [
        (schema, "events", "TABLE"),
        (schema, "kinds", "VIEW"),
    ]
    # The emulator's system tables are not user tables.
    public = {row[2] for row in conn.cursor().get_tables(schema_pattern="public")}
    assert not {"stl_load_errors", "stl_unload_log", "sys_unload_history"} & public


def test_get_columns(conn, schema):
    columns = conn.cursor().get_columns(schema_pattern=schema, tablename_pattern="events")
    assert [(row[3], row[5], row[17]) for row in columns] == [
        ("id", "int4", "NO"),
        ("kind", "varchar", "NO"),
        ("at", "timestamp", "YES"),
    ]


def test_get_schemas(conn, schema):
    assert [row[0] for row in conn.cursor().get_schemas(schema_pattern=schema)] == [schema]


def test_get_primary_keys(conn, schema):
    keys = conn.cursor().get_primary_keys(schema=schema, table="events")
    assert [(row[2], row[3], row[4]) for row in keys] == [("events", "id", 1)]


def test_write_dataframe_and_fetch_dataframe(conn, schema):
    cursor = conn.cursor()
    table = f"{schema}.written_{uuid.uuid4().hex[:6]}"
    cursor.execute(f"create table {table} (id int, name varchar(20))")
    # object dtype: pandas 3 would hold None as NaN in a string column, which the driver sends as 'NaN'
    cursor.write_dataframe(pd.DataFrame({"id": [1, 2], "name": ["ada", None]}, dtype=object), table)
    cursor.execute(f"select id, name from {table} order by id")
    frame = cursor.fetch_dataframe()
    assert frame["id"].tolist() == [1, 2]
    assert frame["name"].tolist()[0] == "ada" and pd.isna(frame["name"].tolist()[1])


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "transaction"])
def test_copy_through_a_cursor(emulator, pg_cluster, s3_server, schema, autocommit):
    """UNLOAD then COPY back, both prepared and executed through Parse/Bind/Execute; without autocommit
    the COPY belongs to the transaction: rolled back, it leaves nothing; committed, it stays."""
    conn = redshift_connector_to(emulator, pg_cluster, autocommit=autocommit)
    to = f"s3://{s3_server.bucket}/rc-copy/{uuid.uuid4().hex}/"
    source, target = f"{schema}.source_{autocommit:d}", f"{schema}.target_{autocommit:d}"
    try:
        cursor = conn.cursor()
        cursor.execute(f"create table {source} (id int, name varchar(20))")
        cursor.execute(f"insert into {source} values (1, 'one'), (2, 'two, with a comma'), (3, null)")
        cursor.execute(f"create table {target} (id int, name varchar(20))")
        cursor.execute(f"UNLOAD ('select * from {source}') TO '{to}' IAM_ROLE default CSV GZIP MANIFEST")
        copy = f"COPY {target} FROM '{to}manifest' IAM_ROLE default CSV GZIP MANIFEST"
        if not autocommit:
            conn.commit()
            cursor.execute(copy)
            conn.rollback()
            cursor.execute(f"select count(*) from {target}")
            assert cursor.fetchone() == [0]
            conn.commit()
        cursor.execute(copy)
        if not autocommit:
            conn.commit()
        cursor.execute(f"select * from {target} order by id")
        assert cursor.fetchall() == ([1, "one"], [2, "two, with a comma"], [3, None])
    finally:
        conn.close()


def test_a_failing_copy_reads_as_redshifts_and_the_session_goes_on(conn, schema, s3_server):
    cursor = conn.cursor()
    with pytest.raises(redshift_connector.ProgrammingError, match="does not exist"):
        cursor.execute(
            f"COPY {schema}.events FROM 's3://{s3_server.bucket}/no/such/prefix/' IAM_ROLE default CSV"
        )
    cursor.execute("select 1")
    assert cursor.fetchone() == [1]
