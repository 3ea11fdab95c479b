"""Which Redshift errors the unload op retries: every SQLSTATE class the code calls transient, read from a
real server (the stack's emulator relays PostgreSQL's error, SQLSTATE included), and one that it is not."""

from __future__ import annotations

import os

import dagster as dg
import psycopg2
import pytest

from unload_assets.resources.redshift import TransientRedshiftError, redshift_from_env

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def raises(local_stack, stack_env) -> str:
    """`public.raise_sqlstate(code)`: a function whose call fails with that SQLSTATE."""
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "create or replace function public.raise_sqlstate(code text) returns int language plpgsql as "
            "$$ begin raise exception 'injected failure %', code using errcode = code; end $$"
        )
    return "public.raise_sqlstate"


def _unload(select: str) -> None:
    sql = f"UNLOAD ('{select}') TO 's3://unload-local/_staging/errors/' IAM_ROLE default PARALLEL OFF"
    with dg.build_resources({"redshift": redshift_from_env(os.environ)}) as resources:  # EnvVars resolved
        resources.redshift.unload(sql, redacted=sql)


@pytest.mark.parametrize(
    "code",
    [
        "53100",  # disk full: insufficient resources (class 53)
        "53300",  # too many connections (class 53)
        "40001",  # serialization failure (class 40)
        "40P01",  # deadlock detected (class 40)
        "57014",  # query cancelled (class 57)
        "08006",  # connection failure (class 08)
    ],
)
def test_transient_sqlstate_classes_are_retried(raises, code):
    with pytest.raises(TransientRedshiftError, match=f"out of capacity \\({code}\\): ERROR: "):
        _unload(f"select {raises}(''{code}'')")


@pytest.mark.parametrize("code", ["42601", "22012", "XX000"])
def test_other_sqlstates_fail_at_once_naming_the_code(raises, code):
    with pytest.raises(dg.Failure) as failed:
        _unload(f"select {raises}(''{code}'')")
    assert failed.value.allow_retries is False
    assert f"Redshift refused the UNLOAD ({code}): " in str(failed.value.description)
    assert failed.value.metadata["sqlstate"].value == code
