"""Redshift's catalog as the emulator answers it: the views and functions tools read, with Redshift's
column names and types, and the emulator's own system tables in `pg_catalog`, not in `public`."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from psycopg2 import sql

from unload_assets_tests.support.emulator_helpers import connect

pytestmark = pytest.mark.stack

SYSTEM_TABLES = ("stl_load_errors", "stl_unload_log", "sys_unload_history")
# Redshift's documented columns of each view, in order.
REDSHIFT_COLUMNS = {
    "svv_tables": ["table_catalog", "table_schema", "table_name", "table_type", "remarks"],
    "svv_all_tables": ["database_name", "schema_name", "table_name", "table_type", "table_acl", "remarks"],
    "svv_all_columns": [
        "database_name",
        "schema_name",
        "table_name",
        "column_name",
        "ordinal_position",
        "column_default",
        "is_nullable",
        "data_type",
        "character_maximum_length",
        "numeric_precision",
        "numeric_scale",
        "remarks",
    ],
    "svv_all_schemas": [
        "database_name",
        "schema_name",
        "schema_owner",
        "schema_type",
        "schema_acl",
        "source_database",
        "schema_option",
    ],
    "svv_external_schemas": ["esoid", "eskind", "schemaname", "esowner", "databasename", "esoptions"],
    "svv_external_columns": [
        "redshift_database_name",
        "schemaname",
        "tablename",
        "columnname",
        "external_type",
        "columnnum",
        "part_key",
        "is_nullable",
    ],
    "pg_table_def": [
        "schemaname",
        "tablename",
        "column",
        "type",
        "encoding",
        "distkey",
        "sortkey",
        "notnull",
    ],
}


@pytest.fixture(scope="module")
def rs(emulator, pg_cluster):
    conn = connect(emulator, pg_cluster)
    with conn.cursor() as cur:
        cur.execute("create schema if not exists catalog_test")
        cur.execute(
            "create table if not exists catalog_test.orders (id integer not null, note varchar(30), "
            "amount numeric(12, 2)) diststyle key distkey(id) sortkey(id)"
        )
        cur.execute("comment on column catalog_test.orders.note is 'free text'")
        cur.execute("create or replace view catalog_test.notes as select note from catalog_test.orders")
    yield conn
    conn.close()


def rows(conn, query: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


@pytest.mark.parametrize("view", list(REDSHIFT_COLUMNS))
def test_views_have_redshifts_columns(rs, view):
    with rs.cursor() as cur:
        cur.execute(f"select * from {view} limit 0")
        assert [d.name for d in cur.description] == REDSHIFT_COLUMNS[view]


def test_tables_and_columns_as_redshift_lists_them(rs):
    assert rows(
        rs, "select table_name, table_type from svv_tables where table_schema = 'catalog_test' order by 1"
    ) == [("notes", "VIEW"), ("orders", "BASE TABLE")]
    assert rows(
        rs, "select table_name, table_type from svv_all_tables where schema_name = 'catalog_test' order by 1"
    ) == [("notes", "VIEW"), ("orders", "TABLE")]
    assert rows(
        rs,
        "select column_name, data_type, character_maximum_length, numeric_precision, numeric_scale, "
        "is_nullable, remarks from svv_columns where table_schema = 'catalog_test' and table_name = 'orders' "
        "order by ordinal_position",
    ) == [
        ("id", "integer", None, 32, 0, "NO", None),
        ("note", "character varying", 30, None, None, "YES", "free text"),
        ("amount", "numeric", None, 12, 2, "YES", None),
    ]
    assert ("catalog_test", "local") in rows(rs, "select schema_name, schema_type from svv_all_schemas")
    assert rows(rs, "select count(*) from svv_external_schemas") == [(0,)]
    assert rows(rs, "select count(*) from svv_external_tables") == [(0,)]


def test_pg_table_def_and_svv_table_info(rs):
    with rs.cursor() as cur:
        cur.execute("set search_path to catalog_test, public")  # pg_table_def lists the search_path's
        cur.execute(
            'select "column", type, encoding, distkey, sortkey, "notnull" from pg_table_def '
            "where tablename = 'orders'"
        )
        assert [(c, t, e.strip(), d, s, n) for c, t, e, d, s, n in cur.fetchall()] == [
            ("id", "integer", "none", False, 0, True),
            ("note", "character varying(30)", "none", False, 0, False),
            ("amount", "numeric(12,2)", "none", False, 0, False),
        ]
        cur.execute("reset search_path")
    assert rows(
        rs,
        'select "table", diststyle, max_varchar, sortkey_num from svv_table_info '
        "where schema = 'catalog_test'",
    ) == [("orders", "EVEN", 30, 0)]
    late = "select * from pg_get_late_binding_view_cols() cols(s name, t name, c name, ty varchar, n int)"
    assert rows(rs, late) == []


def test_redshift_catalog_columns_and_output_aliases_are_translated(rs):
    """sqlalchemy-redshift's shape: Redshift's own pg_class/pg_attribute columns, an output alias in
    WHERE, `WHERE 1 AND`, a derived table without an alias."""
    query = """
        SELECT n.nspname AS "schema", c.relname AS "table_name", att.attname AS "name",
               format_encoding(att.attencodingtype::integer) AS "encode", att.attisdistkey AS "distkey",
               att.attsortkeyord AS "sortkey", c.reldiststyle AS "diststyle"
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_attribute att ON att.attrelid = c.oid
        WHERE att.attnum > 0 AND NOT att.attisdropped AND schema = 'catalog_test' AND table_name = 'orders'
        UNION
        SELECT schemaname, tablename, columnname, null, false, 0, null FROM svv_external_columns WHERE 1
        ORDER BY "name"
    """
    assert rows(rs, query) == [
        ("catalog_test", "orders", "amount", "none", False, 0, 0),
        ("catalog_test", "orders", "id", "none", False, 0, 0),
        ("catalog_test", "orders", "note", "none", False, 0, 0),
    ]
    assert rows(rs, "select * from (select 1 union all select 2) order by 1") == [(1,), (2,)]


def test_system_tables_live_in_pg_catalog_out_of_every_table_list(rs):
    assert rows(
        rs,
        "select relname, nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where relname = any(%s) order by 1",
        (list(SYSTEM_TABLES),),
    ) == [(name, "pg_catalog") for name in SYSTEM_TABLES]
    listed = {r[0] for r in rows(rs, "select tablename from pg_tables where schemaname = 'public'")}
    assert not listed & set(SYSTEM_TABLES)
    assert not {
        r[0] for r in rows(rs, "select table_name from svv_tables where table_schema = 'public'")
    } & set(SYSTEM_TABLES)
    for table in SYSTEM_TABLES:  # still readable unqualified, as on Redshift
        assert rows(rs, f"select count(*) >= 0 from {table}") == [(True,)]
    assert rows(rs, "select pg_last_unload_count(), pg_last_unload_id()") == [(0, -1)]


def test_an_older_databases_public_system_tables_move_with_their_rows(emulator, pg_cluster):
    """Before, the emulator kept its tables in public: the first connection through it moves them."""
    database = f"old_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_cluster.dsn(superuser=True))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            sql.SQL("create database {} owner {}").format(
                sql.Identifier(database), sql.Identifier(pg_cluster.user)
            )
        )
    admin.close()
    old = psycopg2.connect(pg_cluster.dsn(superuser=True, database=database))
    with old, old.cursor() as cur:
        cur.execute("create table public.stl_unload_log (userid integer, query integer, path varchar(1280))")
        cur.execute("insert into public.stl_unload_log values (1, 42, 's3://b/old_0000_part_00')")
        cur.execute("create sequence public.redshift_unload_query_id start 500")
    old.close()
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=emulator.port,
        dbname=database,
        user=pg_cluster.user,
        password=pg_cluster.password,
    )
    try:
        assert rows(conn, "select query, path from stl_unload_log") == [(42, "s3://b/old_0000_part_00")]
        assert rows(conn, "select count(*) from pg_tables where schemaname = 'public'") == [(0,)]
    finally:
        conn.close()
    admin = psycopg2.connect(pg_cluster.dsn(superuser=True, database=database))
    try:  # the query ids go on from where they were (the sequence is the emulator's, as superuser)
        assert rows(admin, "select last_value from pg_catalog.redshift_unload_query_id") == [(500,)]
    finally:
        admin.close()
