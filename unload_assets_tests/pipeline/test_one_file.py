"""A split CSV or text output with a header is ONE object at the final key, for every compression.

The oracle is the emulator's own single-file UNLOAD with HEADER (PARALLEL OFF) of the same query, written
here by hand (not by the package's statement builder), and the direct query's rows from PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import psycopg2
import pytest
from unload_assets_local.stack import LOCAL_IAM_ROLE

from unload_assets_tests.support.pipeline_helpers import (
    connect_redshift,
    decompress,
    get_bytes,
    materialisation_metadata,
    materialise,
    query_as_text,
    write_catalogue,
)

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
SUFFIX = {"none": "", "gzip": ".gz", "bzip2": ".bz2", "zstd": ".zst"}
# Column names HEADER must quote in CSV (a comma, a quote); values CSV must quote (delimiters, quotes,
# line breaks), NULLs, and plain text for the text format (no escaping: it must stay parseable).
CSV_SQL = 'select id, note as "note, with comma", maybe as "say ""hi""" from public.onefile'
TEXT_SQL = 'select id, plain, maybe as "say ""hi""" from public.onefile'


@pytest.fixture(scope="module")
def onefile_table(local_stack, stack_env):
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.onefile")
        cur.execute(
            "create table public.onefile as select g as id,"
            " case mod(g, 5) when 0 then 'a,b;c' when 1 then 'say \"x\"' when 2 then E'two\\nlines'"
            "   when 3 then 'semi;colon' else 'plain' || g end as note,"
            " md5(g::text) as plain,"
            " case when mod(g, 7) = 0 then null else 'v' || g end as maybe"
            " from generate_series(1, 3000) g"
        )
    return "public.onefile"


@pytest.fixture(scope="module")
def wide_table(local_stack, stack_env):
    """~16 MB of CSV that compresses poorly: splits at a MAXFILESIZE of a few MB in every format."""
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.onefile_wide")
        cur.execute(
            "create table public.onefile_wide as select g as id,"
            " (select string_agg(md5((g * 8 + k)::text), '') from generate_series(0, 7) k) as payload"
            " from generate_series(1, 60000) g"
        )
    return "public.onefile_wide"


def _catalogue(tmp_path, name, *, sql, fmt, compression, delimiter=None, addquotes=False, parallel=True,
               max_mb=None):  # fmt: skip
    lines = [
        "targets:",
        f"  - name: {name}",
        "    description: one-file case",
        f"    sql: {json.dumps(sql)}",
        f"    key_template: exports/onefile/{name}/out.{fmt}{SUFFIX[compression]}",
        f"    format: {fmt}",
        f"    compression: {compression}",
        "    header: true",
        f"    parallel: {str(parallel).lower()}",
        "    on_split: combine",
    ]
    if delimiter:
        lines.append(f"    delimiter: {json.dumps(delimiter)}")
    if addquotes:
        lines.append("    addquotes: true")
    if max_mb:
        lines.append(f"    max_file_size_mb: {max_mb}")
    return write_catalogue(tmp_path, "\n".join(lines) + "\n", name=f"{name}.yaml")


def _single_file_unload(stack_env, s3, prefix, *, sql, fmt, compression, delimiter, addquotes) -> bytes:
    """What Redshift's own HEADER writes: one UNLOAD, PARALLEL OFF, no MAXFILESIZE (one file)."""
    options = ["FORMAT CSV"] if fmt == "csv" else []
    options += [] if compression == "none" else [compression.upper()]
    options += ["HEADER"]
    options += [f"DELIMITER '{delimiter}'"] if delimiter else []
    options += ["ADDQUOTES"] if addquotes else []
    quoted = sql.replace("\\", "\\\\").replace("'", "''")
    statement = (
        f"UNLOAD ('{quoted}') TO 's3://{BUCKET}/{prefix}' IAM_ROLE '{LOCAL_IAM_ROLE}' "
        + " ".join(options)
        + " PARALLEL OFF MANIFEST"
    )
    conn = connect_redshift(stack_env)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()
    manifest = json.loads(get_bytes(s3, BUCKET, f"{prefix}manifest"))
    (entry,) = manifest["entries"]
    return decompress(get_bytes(s3, BUCKET, entry["url"].split("/", 3)[3]), compression)


def _records(data: bytes, *, fmt: str, delimiter: str | None, addquotes: bool) -> list[list[str]]:
    text = data.decode()
    if fmt == "csv":
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter or ","))
    rows = [line.split(delimiter or "|") for line in text.split("\n")[:-1]]
    return [[f[1:-1] for f in row] for row in rows] if addquotes else rows


# Every compression for each format, each quoting variant under two compressions (the header member is
# built per compression; the line per format, delimiter and ADDQUOTES).
CASES = [
    ("csv", "none", None, False),
    ("csv", "gzip", ";", False),
    ("csv", "bzip2", None, False),
    ("csv", "zstd", ";", False),
    ("text", "none", "~", True),
    ("text", "gzip", None, False),
    ("text", "bzip2", "~", True),
    ("text", "zstd", None, False),
]


@pytest.mark.parametrize(("fmt", "compression", "delimiter", "addquotes"), CASES)
def test_split_output_with_header_is_one_object_equal_to_a_single_file_unload(
    local_stack, stack_env, onefile_table, tmp_path, fmt, compression, delimiter, addquotes
):
    s3 = local_stack.s3.client()
    name = f"one_{fmt}_{compression}_{'d' if delimiter else 'n'}{'q' if addquotes else ''}"
    sql = CSV_SQL if fmt == "csv" else TEXT_SQL
    options = {"fmt": fmt, "compression": compression, "delimiter": delimiter, "addquotes": addquotes}
    result = materialise(_catalogue(tmp_path, name, sql=sql, **options), name)
    meta = materialisation_metadata(result, name)
    assert meta["staged_files"] == 4 and meta["delivered_as"] == "combine"  # PARALLEL ON over 4 slices
    assert "HEADER" not in meta["statement"]  # the rename writes the header, once
    final_key = f"exports/onefile/{name}/out.{fmt}{SUFFIX[compression]}"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"exports/onefile/{name}/")["Contents"]
    assert [o["Key"] for o in listed] == [final_key]

    combined = decompress(get_bytes(s3, BUCKET, final_key), compression)
    reference = _single_file_unload(stack_env, s3, f"_reference/{name}/", sql=sql, **options)
    # The same header line, byte for byte, and the same data lines (slice order is arbitrary).
    got_head, _, got_body = combined.partition(b"\n")
    want_head, _, want_body = reference.partition(b"\n")
    assert got_head == want_head
    shape = {"fmt": fmt, "delimiter": delimiter, "addquotes": addquotes}
    assert Counter(map(tuple, _records(got_body, **shape))) == Counter(
        map(tuple, _records(want_body, **shape))
    )
    # Parsed back: exactly one header line, then the direct query's rows.
    records = _records(combined, **shape)
    names = ["id", "note, with comma", 'say "hi"'] if fmt == "csv" else ["id", "plain", 'say "hi"']
    assert records[0] == names
    assert sorted(records[1:]) == sorted(query_as_text(local_stack.postgres.dsn(), sql))
    assert meta["dagster/row_count"] == 3000


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_serial_split_is_byte_for_byte_the_single_file(local_stack, stack_env, wide_table, tmp_path,
                                                       compression):  # fmt: skip
    """PARALLEL OFF keeps row order: the combined object IS the single-file UNLOAD once decompressed.
    Files of 6 MB (above the 5 MiB minimum part) take the server-side copy path behind the header."""
    s3 = local_stack.s3.client()
    sql = "select id, payload from public.onefile_wide order by id"
    name = f"serial_{compression}"
    catalogue = _catalogue(
        tmp_path, name, sql=sql, fmt="csv", compression=compression, parallel=False, max_mb=6
    )
    meta = materialisation_metadata(materialise(catalogue, name), name)
    assert meta["staged_files"] >= 2 and meta["delivered_as"] == "combine"
    final_key = f"exports/onefile/{name}/out.csv{SUFFIX[compression]}"
    combined = decompress(get_bytes(s3, BUCKET, final_key), compression)
    reference = _single_file_unload(
        stack_env, s3, f"_reference/{name}/", sql=sql, fmt="csv", compression=compression,
        delimiter=None, addquotes=False,
    )  # fmt: skip
    assert combined == reference
    assert combined.count(b"id,payload\n") == 1


def test_zero_rows_deliver_the_header_line_alone(local_stack, stack_env, onefile_table, tmp_path):
    s3 = local_stack.s3.client()
    sql = "select id, plain from public.onefile where id < 0"
    result = materialise(_catalogue(tmp_path, "empty_gz", sql=sql, fmt="csv", compression="gzip"), "empty_gz")
    meta = materialisation_metadata(result, "empty_gz")
    assert meta["dagster/row_count"] == 0
    assert decompress(get_bytes(s3, BUCKET, "exports/onefile/empty_gz/out.csv.gz"), "gzip") == b"id,plain\n"


def test_parquet_falls_back_to_parts_and_says_so(local_stack, stack_env, wide_table, tmp_path):
    """The one case where one object is impossible: metadata, the check and the Slack line all say that
    the final key holds a manifest of parts."""
    from unload_assets.delivery import Delivery
    from unload_assets.notify.messages import RunFacts, success_message

    body = """
    targets:
      - name: pq_split
        description: parquet that splits
        sql: select id, payload from public.onefile_wide
        key_template: exports/onefile/pq_split/out.parquet
        format: parquet
        max_file_size_mb: 5
    """
    result = materialise(write_catalogue(tmp_path, body, name="pq.yaml"), "pq_split")
    meta = materialisation_metadata(result, "pq_split")
    assert meta["delivered_as"].startswith("parts (fell back: parquet cannot be combined")
    assert meta["dagster/uri"] == f"s3://{BUCKET}/exports/onefile/pq_split/out.parquet.manifest"
    (check,) = result.get_asset_check_evaluations()
    assert check.passed is False and check.severity.value == "WARN"  # the objects themselves are fine
    assert check.metadata["problems"].value == (
        "the final key holds a manifest of parts, not one object (on_split: combine)"
    )
    run = RunFacts(run_id="r" * 32, job_name="daily", link="http://localhost/runs/r", trigger="manual")
    message = success_message(run, [Delivery.from_metadata(meta, target="pq_split")])
    assert "manifest of parts, not the file" in message.text
    assert "parquet cannot be combined" in message.text


@pytest.mark.parametrize(("fmt", "compression"), [("json", "gzip"), ("parquet", "none"), ("text", "bzip2")])
def test_an_empty_day_delivers_a_valid_empty_object_says_0_rows_and_the_check_warns(
    local_stack, stack_env, onefile_table, tmp_path, fmt, compression
):
    from unload_assets.delivery import Delivery
    from unload_assets.notify import messages

    name = f"empty_{fmt}"
    suffix = {"none": "", "gzip": ".gz", "bzip2": ".bz2"}[compression]
    key = f"exports/onefile/{name}/out.{fmt}{suffix}"
    catalogue = write_catalogue(
        tmp_path,
        f"""
targets:
  - name: {name}
    description: a day without rows
    sql: select id, plain from public.onefile where id < 0
    key_template: {key}
    format: {fmt}
    compression: {compression}
""",
        name=f"{name}.yaml",
    )
    result = materialise(catalogue, name)
    meta = materialisation_metadata(result, name)
    assert meta["dagster/row_count"] == 0 and meta["dagster/uri"] == f"s3://{BUCKET}/{key}"
    data = get_bytes(local_stack.s3.client(), BUCKET, key)
    if fmt == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == 0 and table.schema.names == ["id", "plain"]
    else:
        assert data and decompress(data, compression) == b""  # a valid, empty stream
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["problems"].value == "the UNLOAD wrote no rows"  # the empty object checks out
    message = messages.success_message(
        messages.RunFacts("r" * 36, "job", "http://x/runs/r", "launched by hand"),
        [Delivery.from_metadata(meta, target=name)],
    )
    assert f"*{name}* unpartitioned · 0 rows" in message.text
