"""SQL that broke the tools we replace, run through the statement builder, the emulator and the rename."""

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from unload_assets.catalogue import PACKAGED_CATALOGUE
from unload_assets.component import build_definitions
from unload_assets.resources import RedshiftUnloadResource, TransientRedshiftError
from unload_assets_tests.support.pipeline_helpers import (
    connect_redshift,
    csv_rows,
    get_bytes,
    materialisation_metadata,
    materialise,
    write_catalogue,
)

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]

# (name, select, the rows Redshift returns, as CSV fields)
CORPUS = [
    ("two_obriens", "select 'O''Brien' as a, 'O''Neil' as b", [["O'Brien", "O'Neil"]]),
    ("empty_strings", "select '' as empty, 'x' as x, '' as also_empty", [["", "x", ""]]),
    ("backslashes", r"select 'c:\\tmp\\new' as path, '\\\\server' as unc", [[r"c:\tmp\new", r"\\server"]]),
    ("dollars", "select '$$not a quote$$' as d, '$1 and $2' as e", [["$$not a quote$$", "$1 and $2"]]),
    ("dash_comment", "select 1 as n -- it's a comment with a ' quote\n, 'a' as s", [["1", "a"]]),
    ("block_comment", "select /* don't */ 'ok' as s", [["ok"]]),
    (
        "like_percent",
        "select name from (select 'abc%' as name union all select 'xyz' as name) t where name like 'ab%'",
        [["abc%"]],
    ),
    ("semicolon_in_string", "select 'a;b' as s, ';' as t", [["a;b", ";"]]),
    ("non_ascii", "select 'Zürich 東京 🚀' as s, 'naïve' as t", [["Zürich 東京 🚀", "naïve"]]),
    ("quoted_identifier", 'select \'x\' as "Odd ""name"""', [["x"]]),
    ("redshift_functions", "select nvl(null, 'fallback') as v, len('abc') as n", [["fallback", "3"]]),
    (
        "delimiters_and_quotes",
        "select 'a,b' as c, 'say \"hi\"' as q, 'p|q' as p",
        [["a,b", 'say "hi"', "p|q"]],
    ),
]


@pytest.fixture(scope="module")
def corpus_catalogue(tmp_path_factory) -> Path:
    entries = "".join(
        textwrap.indent(
            f"- name: awkward_{name}\n"
            f"  description: awkward SQL case {name}\n"
            f"  sql: {_yaml_block(sql)}\n"
            f"  key_template: exports/awkward/{name}.csv\n",
            "  ",
        )
        for name, sql, _ in CORPUS
    )
    body = "defaults:\n  format: csv\n  owners: ['team:qa']\ntargets:\n" + entries
    return write_catalogue(tmp_path_factory.mktemp("awkward"), body)


def _yaml_block(sql: str) -> str:
    return "|-\n" + textwrap.indent(sql, "    ")


@pytest.mark.parametrize(("name", "sql", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_unloaded_rows_are_what_redshift_returns(
    local_stack, stack_env, corpus_catalogue, name, sql, expected
):
    result = materialise(corpus_catalogue, f"awkward_{name}")
    body = get_bytes(local_stack.s3.client(), "unload-local", f"exports/awkward/{name}.csv").decode()
    assert csv_rows(body, header=False)[1] == expected
    assert materialisation_metadata(result, f"awkward_{name}")["dagster/row_count"] == len(expected)


def test_bad_catalogue_fails_definitions_validate_with_the_target_and_field(tmp_path):
    bad = write_catalogue(
        tmp_path,
        """
        targets:
          - name: sales_data
            description: typo in the template
            sql: select * from public.sales where sale_date = {{ partition_date }}
            key_template: exports/sales/{day}.csv
            partitioning: {type: daily, start_date: "2026-01-01"}
          - name: sales_data
            description: duplicate, and an outer limit
            sql: select * from public.sales limit 10
            key_template: exports/again.csv
        """,
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**_clean_env(), "UNLOAD_TARGETS_FILE": str(bad)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "target 'sales_data', field 'key_template'" in output and "{day}" in output
    assert "outer LIMIT" in output
    assert "duplicate" in output.lower()


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PYTEST_"))}


def _resource(env: dict[str, str], **overrides: object) -> RedshiftUnloadResource:
    fields: dict[str, object] = dict(
        host="127.0.0.1",
        port=int(env["REDSHIFT_PORT"]),
        user=env["REDSHIFT_USER"],
        password=env["REDSHIFT_PASSWORD"],
        database=env["REDSHIFT_DATABASE"],
        sslmode="disable",
    )
    fields.update(overrides)
    return RedshiftUnloadResource(**fields)  # type: ignore[arg-type]


def test_statement_errors_are_not_retried_and_name_no_secret(stack_env):
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    sql = (
        "UNLOAD ('select * from no_such_table') TO 's3://unload-local/x/' "
        f"ACCESS_KEY_ID 'AKIAEXAMPLE' SECRET_ACCESS_KEY '{secret}' CSV"
    )
    with pytest.raises(dg.Failure) as info:
        _resource(stack_env).unload(sql, redacted="UNLOAD (...) SECRET_ACCESS_KEY '***'", secrets=[secret])
    assert not info.value.allow_retries
    assert "no_such_table" in info.value.description
    assert secret not in str(info.value) and secret not in str(info.value.metadata)


def test_a_wrong_password_is_not_retried_and_not_echoed(stack_env):
    with pytest.raises(dg.Failure, match="refused the login") as info:
        _resource(stack_env, password="definitely-wrong-pw").unload(
            "select 1", redacted="select 1", secrets=["definitely-wrong-pw"]
        )
    assert not info.value.allow_retries and "definitely-wrong-pw" not in str(info.value)


def test_connection_errors_stay_retryable(stack_env):
    with connect_redshift(stack_env):
        pass  # the emulator is up; now point at a port nothing listens on
    from unload_assets_local.postgres import free_port

    with pytest.raises(TransientRedshiftError, match="Could not connect"):
        _resource(stack_env, port=free_port(), connect_timeout=2).unload("select 1", redacted="select 1")


def test_connections_keep_alive_through_a_long_silent_unload(stack_env):
    conn = _resource(stack_env).connect()
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        finally:
            sock.close()
    finally:
        conn.close()


def test_the_statement_timeout_cancels_the_unload_and_stays_retryable(stack_env, local_stack):
    local_stack.emulator.faults.inject("stall", seconds=30, to_contains="s3://unload-local/timeout-test/")
    sql = "UNLOAD ('select 1') TO 's3://unload-local/timeout-test/' IAM_ROLE default"
    try:
        with pytest.raises(TransientRedshiftError, match=r"57014.*canceled on user's request"):
            _resource(stack_env, statement_timeout_seconds=1).unload(sql, redacted=sql)
    finally:
        local_stack.emulator.faults.clear()


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon"])
def test_a_bad_statement_timeout_names_the_attribute(monkeypatch, value):
    """This project's defs.yaml reads it from REDSHIFT_STATEMENT_TIMEOUT_SECONDS: the attribute is named."""
    monkeypatch.setenv("REDSHIFT_STATEMENT_TIMEOUT_SECONDS", value)
    with pytest.raises(
        Exception, match=f"(?s)field 'statement_timeout_seconds'.*{re.escape(value)}.* is not a whole"
    ):
        build_definitions(PACKAGED_CATALOGUE)
