"""COPY from S3 through the emulator: what UNLOAD wrote loads back equal to its source, in every format
and compression; manifests (with `mandatory`), header lines, and Redshift's errors."""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal

import psycopg2
import pytest

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
COLUMNS = "id int, name varchar(40), amount numeric(10,2), day date, ok boolean"
ROWS = """
insert into {t} values
  (1, 'plain', 10.50, '2026-01-02', true),
  (2, 'comma, and "quotes"', -3.25, '2026-02-03', false),
  (3, null, null, null, null),
  (4, 'ünïcödé ✓', 0, '2026-12-31', true)
"""


@pytest.fixture()
def conn(stack_env):
    connection = psycopg2.connect(
        host="127.0.0.1", port=int(stack_env["REDSHIFT_PORT"]), dbname=stack_env["REDSHIFT_DATABASE"],
        user=stack_env["REDSHIFT_USER"], password=stack_env["REDSHIFT_PASSWORD"], sslmode="disable",
    )  # fmt: skip
    connection.autocommit = True
    yield connection
    connection.close()


def _tables(cur, *names: str) -> None:
    for name in names:
        cur.execute(f"create table {name} ({COLUMNS})")


def _same(cur, a: str, b: str) -> None:
    cur.execute(f"select count(*) from (select * from {a} except all select * from {b}) x")
    missing = cur.fetchone()[0]
    cur.execute(f"select count(*) from (select * from {b} except all select * from {a}) x")
    assert (missing, cur.fetchone()[0]) == (0, 0)
    cur.execute(f"select count(*) from {b}")
    assert cur.fetchone()[0] == 4


@pytest.mark.parametrize(
    ("unload_options", "copy_options"),
    [
        ("NULL AS '\\\\N'", ""),  # pipe-delimited text; NULL as COPY reads it by default: \N
        ("NULL AS 'NULL' GZIP", "NULL AS 'NULL' GZIP"),
        ("CSV", "CSV"),
        ("CSV HEADER BZIP2", "CSV IGNOREHEADER 1 BZIP2"),
        ("CSV DELIMITER ';' ZSTD", "CSV DELIMITER ';' ZSTD"),
        ("FORMAT JSON", "FORMAT JSON 'auto'"),
        ("FORMAT JSON GZIP", "JSON 'auto' GZIP"),
        ("FORMAT PARQUET", "FORMAT AS PARQUET"),
        ("NULL AS '\\\\N' BZIP2", "BZIP2"),
        ("NULL AS '\\\\N' ZSTD", "ZSTD"),
        ("CSV GZIP", "CSV GZIP"),
        ("FORMAT JSON BZIP2", "JSON 'auto' BZIP2"),
        ("FORMAT JSON ZSTD", "JSON 'auto' ZSTD"),
        ("FORMAT PARQUET", "PARQUET"),
    ],
)
def test_unload_then_copy_loads_the_same_rows(conn, unload_options, copy_options):
    source, loaded, prefix = (f"copy_{n}_{uuid.uuid4().hex[:8]}" for n in ("src", "dst", "files"))
    with conn.cursor() as cur:
        _tables(cur, source, loaded)
        cur.execute(ROWS.format(t=source))
        to = f"s3://{BUCKET}/copy/{prefix}/"
        cur.execute(f"UNLOAD ('select * from {source}') TO '{to}' IAM_ROLE default {unload_options}")
        cur.execute(f"COPY {loaded} FROM '{to}' IAM_ROLE default {copy_options}")
        assert any("4 record(s) loaded successfully" in n for n in conn.notices)
        _same(cur, source, loaded)


def test_a_manifest_loads_its_entries_and_a_missing_mandatory_file_fails_clearly(conn, s3):
    source, loaded = (f"copy_{n}_{uuid.uuid4().hex[:8]}" for n in ("src", "dst"))
    to = f"s3://{BUCKET}/copy/manifest_{uuid.uuid4().hex[:8]}/"
    with conn.cursor() as cur:
        _tables(cur, source, loaded)
        cur.execute(ROWS.format(t=source))
        cur.execute(f"UNLOAD ('select * from {source}') TO '{to}' IAM_ROLE default CSV MANIFEST")
        cur.execute(f"COPY {loaded} FROM '{to}manifest' IAM_ROLE default CSV MANIFEST")
        _same(cur, source, loaded)
        # One entry deleted: as a mandatory entry the load fails naming the file; as optional it is skipped.
        key = to[len(f"s3://{BUCKET}/") :]
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key + "manifest")["Body"].read())
        assert len(manifest["entries"]) == 4 and not any(e.get("mandatory") for e in manifest["entries"])
        first = manifest["entries"][0]["url"]
        s3.delete_object(Bucket=BUCKET, Key=first[len(f"s3://{BUCKET}/") :])
        strict = {"entries": [{**e, "mandatory": True} for e in manifest["entries"]]}
        s3.put_object(Bucket=BUCKET, Key=key + "strict.manifest", Body=json.dumps(strict).encode())
        with pytest.raises(psycopg2.Error, match="The specified key does not exist") as failure:
            cur.execute(f"COPY {loaded} FROM '{to}strict.manifest' IAM_ROLE default CSV MANIFEST")
        assert first in str(failure.value)
        cur.execute(f"truncate {loaded}")
        cur.execute(f"COPY {loaded} FROM '{to}manifest' IAM_ROLE default CSV MANIFEST")  # optional entries
        cur.execute(f"select count(*) from {loaded}")
        assert cur.fetchone()[0] < 4


def test_a_bad_row_fails_the_load_with_redshifts_message_and_a_load_error(conn, s3):
    table = f"copy_bad_{uuid.uuid4().hex[:8]}"
    key = f"copy/bad_{uuid.uuid4().hex[:8]}/data.csv"
    s3.put_object(
        Bucket=BUCKET, Key=key, Body=b"1,one,1.00,2026-01-01,true\nnot-a-number,two,2,2026-01-01,true\n"
    )
    with conn.cursor() as cur:
        _tables(cur, table)
        with pytest.raises(
            psycopg2.Error, match=f"Load into table '{table}' failed. Check 'stl_load_errors'"
        ):
            cur.execute(f"COPY {table} FROM 's3://{BUCKET}/{key}' IAM_ROLE default CSV")
        cur.execute(f"select count(*) from {table}")
        assert cur.fetchone()[0] == 0  # nothing of a failed load stays
        cur.execute(
            "select line_number, trim(colname), trim(err_reason) from stl_load_errors where trim(tbl) = %s",
            (table,),
        )
        line, column, reason = cur.fetchone()
        assert (line, column) == (2, "id") and "not-a-number" in reason


def test_an_empty_prefix_is_an_error(conn):
    with conn.cursor() as cur:
        cur.execute("create temp table nothing_here (id int)")
        with pytest.raises(psycopg2.Error, match="The specified S3 prefix .* does not exist"):
            cur.execute(
                f"COPY nothing_here FROM 's3://{BUCKET}/copy/none_{uuid.uuid4().hex}/' IAM_ROLE default"
            )


def test_json_records_survive_any_chunk_boundary():
    from unload_assets_local.emulator.copy.formats import JsonRecords

    data = '{"ID": 1, "name": "ünï"}\n{"id": 2, "extra": [1, 2]}\n  {"name": null, "id": 3}'.encode()
    for cut in range(1, len(data)):
        records = JsonRecords(["id", "name"])
        rows = [*records.feed(data[:cut]), *records.feed(data[cut:])]
        records.finish()
        assert rows == [[1, "ünï"], [2, None], [3, None]], cut
    records = JsonRecords(["id"])
    list(records.feed(b'{"id": 1}\n{"id": '))
    with pytest.raises(Exception, match="cut short at the end of a file"):
        records.finish()


def test_quote_and_region_options(conn, s3):
    table = f"copy_quote_{uuid.uuid4().hex[:8]}"
    key = f"copy/quote_{uuid.uuid4().hex[:8]}/data.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"1,%a, with comma%,1.00,2026-01-01,true\n2,%50%% off%,,,\n")
    with conn.cursor() as cur:
        _tables(cur, table)
        cur.execute(
            f"COPY {table} FROM 's3://{BUCKET}/{key}' IAM_ROLE default CSV QUOTE AS '%' REGION 'us-east-1'"
        )
        cur.execute(f"select id, name, amount from {table} order by id")
        assert cur.fetchall() == [(1, "a, with comma", Decimal("1.00")), (2, "50% off", None)]


def test_copy_statements_are_read_as_redshift_writes_them():
    from unload_assets_local.emulator.copy.statement import parse_copy
    from unload_assets_local.emulator.unload.command import UnloadError

    cmd = parse_copy(
        "COPY public.t (a, \"B\") FROM 's3://b/p/' IAM_ROLE default FORMAT AS JSON 'auto ignorecase' GZIP"
    )
    assert (cmd.table, cmd.columns, cmd.bucket, cmd.key) == ("public.t", ("a", "B"), "b", "p/")
    assert (cmd.format, cmd.compression, cmd.json_auto) == ("json", "gzip", True)
    with pytest.raises(UnloadError, match="^COPY: no authorization"):
        parse_copy("COPY t FROM 's3://b/p/' CSV")
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzz"
    with pytest.raises(UnloadError, match="^COPY: IAM_ROLE cannot be used with") as mixed:
        parse_copy(
            f"COPY t FROM 's3://b/p/' IAM_ROLE default ACCESS_KEY_ID 'AKIA' SECRET_ACCESS_KEY '{secret}'"
        )
    assert secret not in str(mixed.value)


@pytest.mark.parametrize("escape", ["", "ESCAPE"])
def test_empty_fields_of_non_text_columns_load_as_null_as_redshift_loads_them(conn, escape):
    # UNLOAD's default text writes NULL as an empty field; COPY loads an empty int, numeric or date as
    # NULL (Redshift's rule), while an empty varchar stays the empty string.
    source, loaded, prefix = (f"empty_{n}_{uuid.uuid4().hex[:8]}" for n in ("src", "dst", "files"))
    with conn.cursor() as cur:
        for table in (source, loaded):
            cur.execute(f"create table {table} (id int, amount numeric(10,2), day date, note varchar(20))")
        rows = "(1, 1.5, '2026-01-02', 'a|b'), (2, null, null, ''), (null, 2, null, 'z')"
        cur.execute(f"insert into {source} values {rows}")
        to = f"s3://{BUCKET}/copy/{prefix}/"
        # Without ESCAPE a '|' inside a value would split it: only the ESCAPE round trip carries one.
        if not escape:
            cur.execute(f"update {source} set note = 'a' where id = 1")
        cur.execute(f"UNLOAD ('select * from {source}') TO '{to}' IAM_ROLE default {escape}")
        cur.execute(f"COPY {loaded} FROM '{to}' IAM_ROLE default {escape}")
        cur.execute(f"select * from {loaded} order by id nulls last")
        rows = cur.fetchall()
    note = "a|b" if escape else "a"
    assert rows == [
        (1, Decimal("1.50"), date(2026, 1, 2), note),
        (2, None, None, ""),
        (None, Decimal("2.00"), None, "z"),
    ]


def test_empty_fields_split_anywhere_across_chunks():
    from unload_assets_local.emulator.copy.formats import EmptyAsNull

    data = b"1||x|\n|2|\\|y|\n\\\n|||\n"  # with ESCAPE: an escaped delimiter and an escaped newline
    expected = b"1|\\N|x|\\N\n\\N|2|\\|y|\\N\n\\\n|\\N||\\N\n"
    for cut in range(len(data) + 1):
        for cut2 in range(cut, len(data) + 1):
            empty = EmptyAsNull([True, True, False, True], b"|", b"\\N", escape=True)
            out = (
                empty.feed(data[:cut]) + empty.feed(data[cut:cut2]) + empty.feed(data[cut2:]) + empty.finish()
            )
            assert out == expected, (cut, cut2)
    plain = EmptyAsNull([True, False], b",", b"NULL", escape=False)
    assert plain.feed(b"1,\n,a\n,") + plain.finish() == b"1,\nNULL,a\nNULL,"


def test_a_column_list_loads_those_columns_and_leaves_the_rest_null(conn):
    source, loaded, prefix = (f"cols_{n}_{uuid.uuid4().hex[:8]}" for n in ("src", "dst", "files"))
    with conn.cursor() as cur:
        _tables(cur, source, loaded)
        cur.execute(ROWS.format(t=source))
        to = f"s3://{BUCKET}/copy/{prefix}/"
        cur.execute(f"UNLOAD ('select day, id from {source}') TO '{to}' IAM_ROLE default CSV")
        cur.execute(f"COPY {loaded} (day, id) FROM '{to}' IAM_ROLE default CSV")
        cur.execute(f"select id, name, amount, day, ok from {loaded} order by id")
        assert cur.fetchall() == [
            (1, None, None, date(2026, 1, 2), None),
            (2, None, None, date(2026, 2, 3), None),
            (3, None, None, None, None),
            (4, None, None, date(2026, 12, 31), None),
        ]
