"""sqlalchemy-redshift, unmodified, against the emulator, over both of its drivers: reflection (which reads
Redshift's catalog: `pg_class.reldiststyle`, `pg_attribute.attencodingtype`, `svv_external_*`,
`pg_get_late_binding_view_cols()`, an output alias in WHERE) and `pandas.read_sql` with a table name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.stack

DRIVERS = {
    "redshift_connector": "redshift+redshift_connector://{user}:{password}@127.0.0.1:{port}/{db}?ssl=false",
    "psycopg2": "redshift+psycopg2://{user}:{password}@127.0.0.1:{port}/{db}?sslmode=disable",
}


@pytest.fixture(scope="module")
def schema(emulator, pg_cluster) -> Iterator[str]:
    """A schema with a table (primary key, comment, default, Redshift's table design) and a view; and a
    table in the default schema."""
    name = f"sa_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(_url("psycopg2", emulator, pg_cluster))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"create schema {name}")
        conn.exec_driver_sql(
            f"create table {name}.orders (id integer primary key, customer varchar(40) not null, "
            "amount numeric(10, 2) default 0, placed date) diststyle key distkey(id) sortkey(placed)"
        )
        conn.exec_driver_sql(f"comment on table {name}.orders is 'one row per order'")
        conn.exec_driver_sql(
            f"insert into {name}.orders values (1, 'ada', 10.50, '2026-01-02'), (2, 'grace', 3.25, null)"
        )
        conn.exec_driver_sql(
            f"create view {name}.big_orders as select id from {name}.orders where amount > 5"
        )
        # pandas.read_sql("<table>", engine) reads from the default schema (the search_path's first)
        conn.exec_driver_sql(f"create table {name}_payments (id int, paid boolean)")
        conn.exec_driver_sql(f"insert into {name}_payments values (1, true), (2, false)")
    engine.dispose()
    yield name


def _url(driver: str, emulator, pg_cluster) -> str:
    return DRIVERS[driver].format(
        user=pg_cluster.user, password=pg_cluster.password, port=emulator.port, db=pg_cluster.database
    )


@pytest.fixture(scope="module", params=list(DRIVERS))
def engine(request, emulator, pg_cluster) -> Iterator[sa.Engine]:
    engine = sa.create_engine(_url(request.param, emulator, pg_cluster))
    yield engine
    engine.dispose()


def test_get_table_names_and_view_names(engine, schema):
    inspector = sa.inspect(engine)
    assert inspector.get_table_names(schema=schema) == ["orders"]
    assert inspector.get_view_names(schema=schema) == ["big_orders"]
    # The emulator's own system tables are Redshift's, in pg_catalog: in no user schema's list.
    assert not {"stl_load_errors", "stl_unload_log", "sys_unload_history"} & set(inspector.get_table_names())


def test_get_columns(engine, schema):
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("orders", schema=schema)}
    assert list(columns) == ["id", "customer", "amount", "placed"]
    assert isinstance(columns["id"]["type"], sa.Integer) and not columns["id"]["nullable"]
    assert isinstance(columns["customer"]["type"], sa.String) and columns["customer"]["type"].length == 40
    assert isinstance(columns["amount"]["type"], sa.Numeric) and columns["amount"]["type"].scale == 2
    assert columns["amount"]["default"] == "0"
    assert isinstance(columns["placed"]["type"], sa.Date)
    view = sa.inspect(engine).get_columns("big_orders", schema=schema)
    assert [c["name"] for c in view] == ["id"]


def test_get_pk_constraint_and_has_table(engine, schema):
    inspector = sa.inspect(engine)
    assert inspector.get_pk_constraint("orders", schema=schema)["constrained_columns"] == ["id"]
    assert inspector.has_table("orders", schema=schema)
    assert not inspector.has_table("no_such_orders", schema=schema)
    assert inspector.get_table_comment("orders", schema=schema)["text"] == "one row per order"


def test_pandas_read_sql_with_a_table_name(engine, schema):
    frame = pd.read_sql(f"{schema}_payments", engine)  # a table name, not a query: pandas reflects it
    assert frame.sort_values("id")["paid"].tolist() == [True, False]
    frame = pd.read_sql_table("orders", engine, schema=schema)
    assert frame["customer"].tolist() == ["ada", "grace"]
    assert [float(v) for v in frame["amount"]] == [10.5, 3.25]


def test_pandas_read_sql_with_a_query(engine, schema):
    frame = pd.read_sql(
        sa.text(f"select nvl(placed, '2026-12-31') as day from {schema}.orders order by id"), engine
    )
    assert [str(d) for d in frame["day"]] == ["2026-01-02", "2026-12-31"]
