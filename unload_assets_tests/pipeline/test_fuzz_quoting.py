"""Generated SELECTs over nasty string literals, quoted by `build_unload`, run by the real emulator.

Each example is one SELECT of a few string literals written the way a person writes them in Redshift
(`'` as `''` or `\\'`, `\\` as `\\\\`, everything else raw: `$`, newlines, `--`, `/*`, braces, non-ASCII),
wrapped by the statement builder into UNLOAD (...) and sent over psycopg2 to the emulator. The rows read
back from S3 must equal the intended values, and the rows the same SELECT returns when queried directly.

Profiles: `quoting` (100 examples) by default, `quoting-ci` (1000) when CI is set; one connection and
one tiny UNLOAD per example keeps the CI profile within a minute.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unload_assets.catalogue import UnloadTarget
from unload_assets.statement.auth import UnloadAuth
from unload_assets.statement.build import build_unload, render_select
from unload_assets_tests.support.pipeline_helpers import connect_redshift

pytestmark = pytest.mark.stack

settings.register_profile(
    "quoting", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("quoting-ci", settings.get_profile("quoting"), max_examples=1000)
PROFILE = settings.get_profile("quoting-ci" if os.getenv("CI") else "quoting")

BUCKET, PREFIX = "unload-local", "_staging/fuzz-quoting"
DAY = date(2026, 3, 7)
ROLE = UnloadAuth(iam_role="arn:aws:iam::123456789012:role/unload-local")
# Mostly the characters that break quoting, plus a little of everything else (NUL aside: no statement
# can hold it, and the catalogue refuses it).
NASTY = st.sampled_from(
    ["'", "\\", "$", "$$", "--", "/*", "*/", "}}", ";", '"', ",", "%", "\n", "\r\n", "\t"]
)
PLACEHOLDER_TEXT = st.just("{{ partition_date }}")  # inside a literal: text, never bound
OTHER = st.characters(codec="utf-8", exclude_characters="\0")
VALUES = st.lists(
    st.lists(NASTY | OTHER | PLACEHOLDER_TEXT, max_size=12).map("".join), min_size=1, max_size=5
)


def written(value: str, quote_style: str) -> str:
    """`value` as a Redshift string literal, its quotes escaped either way Redshift accepts."""
    body = value.replace("\\", "\\\\").replace("'", "''" if quote_style == "double" else "\\'")
    return f"'{body}'"


def _target(
    values: list[str], quote_style: str, daily: bool, fmt: str = "csv"
) -> tuple[UnloadTarget, date | None]:
    """A target selecting `values` as written literals; daily ones also bind the partition date."""
    select = "select " + ", ".join(f"{written(v, quote_style)} as c{i}" for i, v in enumerate(values))
    fields: dict[str, Any] = {"key_template": "x.csv"}
    if daily:  # a placeholder in code is bound; the same text inside the literals above stays text
        select += ", {{ partition_date }} as day"
        fields = {
            "key_template": "x/{date}.csv",
            "partitioning": {"type": "daily", "start_date": "2026-01-01"},
        }
    target = UnloadTarget(name="fuzz", description="d", sql=select, format=fmt, **fields)
    return target, DAY if daily else None


@pytest.fixture(scope="module")
def session(local_stack, stack_env) -> Iterator[tuple[Any, Any]]:
    conn = connect_redshift(stack_env)
    conn.autocommit = True
    with conn.cursor() as cur:
        # Redshift reads `\'` and `\\` inside literals as escapes; the emulator passes plain queries to
        # PostgreSQL, whose default is the standard reading, so ask for Redshift's for the direct query.
        cur.execute("set standard_conforming_strings = off; set escape_string_warning = off")
    s3 = local_stack.s3.client()
    yield conn, s3
    conn.close()
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
            for o in p.get("Contents", [])]  # fmt: skip
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})


def _unloaded(s3: Any, prefix: str, fmt: str) -> list[list[str]]:
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}manifest")["Body"].read())
    text = "".join(
        s3.get_object(Bucket=BUCKET, Key=e["url"].split("/", 3)[3])["Body"].read().decode()
        for e in manifest["entries"]
    )
    if fmt == "json":
        # Only "\n" ends a JSON line: str.splitlines() would also split at U+0085, U+2028, ... in values.
        return [list(json.loads(line).values()) for line in text.split("\n") if line]
    return list(csv.reader(io.StringIO(text, newline="")))


@settings(PROFILE)
@given(
    values=VALUES,
    quote_style=st.sampled_from(["double", "backslash"]),
    fmt=st.sampled_from(["csv", "json"]),
    daily=st.booleans(),
)
def test_unloaded_literals_equal_the_values_and_the_direct_query(session, values, quote_style, fmt, daily):
    conn, s3 = session
    target, day = _target(values, quote_style, daily, fmt)
    prefix = f"{PREFIX}/{uuid.uuid4().hex}/"
    statement = build_unload(target, partition_date=day, location=f"s3://{BUCKET}/{prefix}", auth=ROLE)
    expected = [[*values, DAY.isoformat()] if daily else values]
    with conn.cursor() as cur:
        cur.execute(render_select(target, day))  # no parameters: psycopg2 sends `%` as it is
        assert [[str(v) for v in row] for row in cur.fetchall()] == expected
        cur.execute(statement.sql)
    # A NULL and '' both unload as an empty field; no generated value is NULL, so '' is ''.
    assert _unloaded(s3, prefix, fmt) == expected


@pytest.fixture(scope="module")
def postgres(local_stack) -> Iterator[Any]:
    """PostgreSQL itself, not the emulator: its lexer, not ours, reads the literal back."""
    conn = psycopg2.connect(local_stack.postgres.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("set standard_conforming_strings = off; set escape_string_warning = off")
    yield conn
    conn.close()


@settings(PROFILE)
@given(values=VALUES, quote_style=st.sampled_from(["double", "backslash"]), daily=st.booleans())
def test_the_unload_literal_reads_back_as_the_select_in_postgresql(postgres, values, quote_style, daily):
    # An oracle that shares no code with the builder or the emulator's parser (both use sqltext): the
    # text between `UNLOAD (` and `) TO '<location>'` is handed to PostgreSQL as a value expression,
    # read the way Redshift reads literals (standard_conforming_strings off), and must be the select.
    target, day = _target(values, quote_style, daily)
    location = f"s3://{BUCKET}/{PREFIX}/oracle-{uuid.uuid4().hex}/"
    statement = build_unload(target, partition_date=day, location=location, auth=ROLE).sql
    assert statement.startswith("UNLOAD (")
    *_, end = re.finditer(rf"\)\s+TO '{re.escape(location)}'", statement)
    literal = statement[len("UNLOAD (") : end.start()]
    with postgres.cursor() as cur:
        cur.execute(f"select {literal}")  # no parameters: psycopg2 sends `%` as it is
        [(read_back,)] = cur.fetchall()
    assert read_back == render_select(target, day)
