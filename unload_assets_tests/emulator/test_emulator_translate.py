"""What only Redshift's parser accepts, put in PostgreSQL's words (pure: no server), and which statements
the emulator runs itself in the extended protocol."""

from __future__ import annotations

import pytest
from unload_assets_local.emulator.sql.statements import emulated, first_parameter
from unload_assets_local.emulator.sql.translate import statement_to_postgres


@pytest.mark.parametrize(
    ("redshift", "postgres"),
    [
        # a derived table without an alias (PostgreSQL 15 wants one)
        ("select * from (select 1 as a)", "SELECT * FROM (SELECT 1 AS a) AS derived_table1"),
        (
            "select x from t join (select 1 as y) on true",
            "SELECT x FROM t JOIN (SELECT 1 AS y) AS derived_table1 ON TRUE",
        ),
        # a late-binding view: PostgreSQL binds every view
        (
            "create view v as (select a from t) with no schema binding",
            "CREATE VIEW v AS (SELECT a FROM t)",
        ),
        # a number where WHERE wants a condition
        ("select 1 from t where 1 and x = 2", "SELECT 1 FROM t WHERE TRUE AND x = 2"),
        # in a catalog query: an output alias in WHERE, and in a later projection
        (
            'select n.nspname as "schema", c.relname from pg_catalog.pg_class c, pg_namespace n '
            "where schema = 'public' and relname = 'x'",
            'SELECT n.nspname AS "schema", c.relname FROM pg_catalog.pg_class AS c, pg_namespace AS n '
            "WHERE (n.nspname) = 'public' AND relname = 'x'",
        ),
        (
            "select 'NO' as is_autoincrement, is_autoincrement as generated from pg_catalog.pg_class",
            "SELECT 'NO' AS is_autoincrement, ('NO') AS generated FROM pg_catalog.pg_class",
        ),
        # the columns Redshift adds to PostgreSQL's catalog tables
        (
            "select c.reldiststyle, att.attencodingtype::integer, adsrc from pg_catalog.pg_class c",
            "SELECT 0 AS reldiststyle, CAST(0 AS INT), pg_catalog.pg_get_expr(adbin, adrelid) AS adsrc "
            "FROM pg_catalog.pg_class AS c",
        ),
        # REGEXP_SUBSTR is PostgreSQL's too (sqlglot would write REGEXP_EXTRACT)
        (
            "select regexp_substr(t, '[0-9]+', 4) from (select 'varchar(30)' t)",
            "SELECT REGEXP_SUBSTR(t, '[0-9]+', 4) FROM (SELECT 'varchar(30)' AS t) AS derived_table1",
        ),
    ],
)
def test_redshift_grammar_in_postgresql_words(redshift, postgres):
    assert statement_to_postgres(redshift) == postgres


@pytest.mark.parametrize(
    "sql",
    [
        "select * from (select 1 as a) s",  # already aliased
        "select a as b from t where b = 1",  # not a catalog query: PostgreSQL's rule (and its error)
        "select n.nspname from pg_catalog.pg_namespace n where n.nspname like $1",
        "select 1",
    ],
)
def test_what_postgresql_reads_as_it_is_goes_as_written(sql):
    assert statement_to_postgres(sql) is None


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UNLOAD ('select 1') TO 's3://b/p' IAM_ROLE default", True),
        ("  /* hi */ copy t from 's3://b/p' iam_role default", True),
        ("COPY t FROM STDIN", False),
        ("select 'UNLOAD'", False),
    ],
)
def test_which_statements_the_emulator_runs_itself(sql, expected):
    assert emulated(sql) is expected


def test_the_first_bind_parameter_outside_literals():
    assert first_parameter("COPY t FROM $1 IAM_ROLE default") == (12, "$1")
    assert first_parameter("UNLOAD ('select $1') TO $2 IAM_ROLE default") == (24, "$2")
    assert first_parameter("UNLOAD ('select $1') TO 's3://b/' IAM_ROLE default -- $3") is None
    assert first_parameter("select a$1 from t") is None  # `$` continuing a name
