"""Materialise unload assets against the local stack (emulator, PostgreSQL, S3) and check what lands."""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg2
import pytest

from unload_assets.catalogue import PACKAGED_CATALOGUE
from unload_assets.component import build_definitions
from unload_assets.orchestration.checks import CHECK
from unload_assets_tests.support.pipeline_helpers import (
    connect_redshift,
    csv_rows,
    decompress,
    get_bytes,
    materialisation_metadata,
    materialise,
    query_as_text,
    write_catalogue,
)
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

# ~16 MB of CSV that gzip only halves: several 5 MB files, compressed or not, serial or parallel.
WIDE_ROWS = 60_000


@pytest.fixture(scope="module")
def wide_table(local_stack, stack_env):
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.wide")
        cur.execute(
            "create table public.wide as select g as id,"
            " (select string_agg(md5((g * 8 + k)::text), '') from generate_series(0, 7) k) as payload,"
            " case when mod(g, 7) = 0 then null else 'v' || g end as maybe from generate_series(1, %s) g",
            (WIDE_ROWS,),
        )
    return "public.wide"


@pytest.fixture()
def s3(local_stack):
    return local_stack.s3.client()


def yesterday() -> str:
    return (datetime.now(ZoneInfo("America/Los_Angeles")).date() - timedelta(days=1)).isoformat()


def list_final(s3, bucket: str, prefix: str) -> dict[str, int]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def test_sales_data_for_one_day_equals_the_query(local_stack, stack_env, s3):
    day = yesterday()
    result = materialise(PACKAGED_CATALOGUE, "sales_data", partition=day)
    meta = materialisation_metadata(result, "sales_data")

    key = f"exports/sales/{day}/sales_{day}.csv.gz"
    header, rows = csv_rows(decompress(get_bytes(s3, "unload-local", key), "gzip").decode(), header=True)
    expected = query_as_text(
        local_stack.postgres.dsn(),
        "select sale_id, sale_date, sold_at, customer_id, product, quantity, amount, note "
        f"from public.sales where sale_date = date '{day}' order by sale_id",
    )
    assert header == [
        "sale_id",
        "sale_date",
        "sold_at",
        "customer_id",
        "product",
        "quantity",
        "amount",
        "note",
    ]
    assert rows == expected and len(rows) > 100
    assert meta["dagster/row_count"] == len(expected)
    assert meta["dagster/uri"] == f"s3://unload-local/{key}"
    assert meta["bytes"] == s3.head_object(Bucket="unload-local", Key=key)["ContentLength"]
    assert meta["partition"] == day
    # Dagster's standard keys, which its catalog shows: rows, the URI, the columns as Redshift types them.
    assert meta["dagster/row_count"] == meta["dagster/partition_row_count"] == len(expected)
    assert meta["final_key"] == key
    # One key per fact: none of Dagster's standard keys repeated under a name of ours.
    assert not {"rows", "s3_uri", "finalized_as", "staging_prefix", "rename_client_bytes"} & set(meta)
    columns = {c.name: c.type for c in meta["dagster/column_schema"].columns}
    assert (
        list(columns) == header
        and columns["sale_id"] == "bigint"
        and columns["amount"].startswith("numeric(")
    )
    assert "IAM_ROLE" in meta["statement"] and "MANIFEST VERBOSE" in meta["statement"]
    assert list_final(s3, "unload-local", "_staging/sales_data/") == {}
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {CHECK: True}


def test_unpartitioned_snapshot(local_stack, stack_env, s3):
    result = materialise(PACKAGED_CATALOGUE, "customers_snapshot")
    meta = materialisation_metadata(result, "customers_snapshot")
    data = decompress(get_bytes(s3, "unload-local", "exports/customers/customers.csv.gz"), "gzip").decode()
    _, rows = csv_rows(data, header=True)
    expected = query_as_text(
        local_stack.postgres.dsn(),
        "select customer_id, name, email, country, created_at from public.customers order by customer_id",
    )
    assert rows == expected
    assert meta["partition"] == "unpartitioned" and meta["dagster/row_count"] == len(expected)
    assert meta["dagster/row_count"] == len(expected) and "dagster/partition_row_count" not in meta


SPLIT_TARGET = """
targets:
  - name: wide_{name}
    description: split case {name}
    sql: select id, payload, maybe from public.wide
    key_template: exports/wide/{name}/wide.csv{suffix}
    format: csv
    compression: {compression}
    header: {header}
    parallel: {parallel}
    max_file_size_mb: {max_mb}
    on_split: {on_split}
"""


def split_catalogue(
    tmp_path, name, *, compression="none", header=False, parallel=False, on_split="combine", max_mb=5
):
    suffix = {"none": "", "gzip": ".gz", "bzip2": ".bz2", "zstd": ".zst"}[compression]
    body = SPLIT_TARGET.format(
        name=name,
        suffix=suffix,
        compression=compression,
        header=str(header).lower(),
        parallel=str(parallel).lower(),
        on_split=on_split,
        max_mb=max_mb,
    )
    return write_catalogue(tmp_path, body, name=f"{name}.yaml")


def wide_expected(local_stack) -> list[list[str]]:
    return sorted(query_as_text(local_stack.postgres.dsn(), "select id, payload, maybe from public.wide"))


@pytest.mark.parametrize(
    ("name", "compression", "header", "parallel"),
    [
        ("plain_parallel_header", "none", True, True),
        ("gzip_serial", "gzip", False, False),
        ("zstd_parallel", "zstd", False, True),
        ("plain_serial_header", "none", True, False),
    ],
)
def test_combine_combines_every_part_into_one_object(
    local_stack, stack_env, wide_table, s3, tmp_path, name, compression, header, parallel
):
    result = materialise(
        split_catalogue(tmp_path, name, compression=compression, header=header, parallel=parallel),
        f"wide_{name}",
    )
    meta = materialisation_metadata(result, f"wide_{name}")
    assert meta["staged_files"] >= 2 and meta["delivered_as"] == "combine"
    objects = list_final(s3, "unload-local", f"exports/wide/{name}/")
    assert len(objects) == 1
    (key,) = objects
    got_header, rows = csv_rows(
        decompress(get_bytes(s3, "unload-local", key), compression).decode(), header=header
    )
    assert sorted(rows) == wide_expected(local_stack)
    if header:
        assert got_header == ["id", "payload", "maybe"]
    assert meta["dagster/row_count"] == WIDE_ROWS


def test_parts_with_manifest_and_rerun_with_fewer_parts(local_stack, stack_env, wide_table, s3, tmp_path):
    prefix = "exports/wide/parts/"
    materialise(split_catalogue(tmp_path, "parts", on_split="parts"), "wide_parts")
    first = list_final(s3, "unload-local", prefix)
    parts = sorted(k for k in first if ".part-" in k)
    assert parts[0] == f"{prefix}wide.part-001.csv" and len(parts) >= 3
    assert f"{prefix}wide.csv.manifest" in first
    # What the README promises readers: the manifest loads back, whole, with COPY ... MANIFEST.
    assert _copied_back(stack_env, f"s3://unload-local/{prefix}wide.csv.manifest", "CSV MANIFEST") == 0

    # The same target again with one file per run: the old parts and manifest must go.
    materialise(split_catalogue(tmp_path, "parts", on_split="parts", max_mb=100), "wide_parts")
    assert list_final(s3, "unload-local", prefix).keys() == {f"{prefix}wide.csv"}
    _, rows = csv_rows(get_bytes(s3, "unload-local", f"{prefix}wide.csv").decode(), header=False)
    assert sorted(rows) == wide_expected(local_stack)


def test_header_with_compression_is_one_object(local_stack, stack_env, wide_table, s3, tmp_path):
    # Each gzip file would carry its own header inside its stream: UNLOAD runs without HEADER and the
    # rename writes the one header line on top (test_one_file covers every format and compression).
    result = materialise(split_catalogue(tmp_path, "onegz", compression="gzip", header=True), "wide_onegz")
    meta = materialisation_metadata(result, "wide_onegz")
    assert meta["staged_files"] >= 2 and meta["delivered_as"] == "combine"
    assert list(list_final(s3, "unload-local", "exports/wide/onegz/")) == ["exports/wide/onegz/wide.csv.gz"]
    got_header, rows = csv_rows(
        decompress(get_bytes(s3, "unload-local", "exports/wide/onegz/wide.csv.gz"), "gzip").decode(),
        header=True,
    )
    assert got_header == ["id", "payload", "maybe"] and sorted(rows) == wide_expected(local_stack)
    key = "s3://unload-local/exports/wide/onegz/wide.csv.gz"
    assert _copied_back(stack_env, key, "CSV IGNOREHEADER 1 GZIP") == 0


def _copied_back(stack_env: dict[str, str], source: str, options: str) -> int:
    """COPY `source` into a copy of public.wide's shape through the emulator; the rows that differ from
    public.wide (both ways), or -1 when the counts differ."""
    table = f"wide_back_{uuid.uuid4().hex[:8]}"
    conn = connect_redshift(stack_env)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"create temp table {table} (like public.wide)")
            cur.execute(f"COPY {table} FROM '{source}' IAM_ROLE default {options}")
            src = "public.wide"
            cur.execute(
                f"select (select count(*) from (select * from {src} except all select * from {table}) a)"
                f" + (select count(*) from (select * from {table} except all select * from {src}) b),"
                f" (select count(*) from {table}) = (select count(*) from {src})"
            )
            differing, same_count = cur.fetchone()
            return differing if same_count else -1
    finally:
        conn.close()


def test_on_split_fail_leaves_previous_output_untouched(local_stack, stack_env, wide_table, s3, tmp_path):
    key = "exports/wide/guarded/wide.csv"
    materialise(split_catalogue(tmp_path, "guarded", max_mb=100), "wide_guarded")
    before = s3.head_object(Bucket="unload-local", Key=key)["ETag"]

    result = materialise(
        split_catalogue(tmp_path, "guarded", on_split="fail"), "wide_guarded", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "wide_guarded" in failure.step_failure_data.error.message
    assert s3.head_object(Bucket="unload-local", Key=key)["ETag"] == before


def test_checks_alone_judge_the_materialisation_of_their_partition(local_stack, stack_env):
    # A checks-only run has no materialisation of its own: it must judge its partition's latest one,
    # not the asset's latest (another day), and say so when the partition was never materialised.
    day = yesterday()
    other = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
    never = (datetime.fromisoformat(day) - timedelta(days=2)).date().isoformat()
    key = asset_key_for("sales_data")
    defs = build_definitions(PACKAGED_CATALOGUE)
    checks_only = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(key))
    job = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[checks_only]
    ).resolve_job_def("checks_only")
    with dg.instance_for_test() as instance:
        materialise(PACKAGED_CATALOGUE, "sales_data", partition=day, instance=instance)
        materialise(PACKAGED_CATALOGUE, "sales_data", partition=other, instance=instance)  # the latest
        judged = job.execute_in_process(tags={"dagster/partition": day}, instance=instance)
        evaluations = {c.check_name: c for c in judged.get_asset_check_evaluations()}
        assert {name: c.passed for name, c in evaluations.items()} == {CHECK: True}
        assert evaluations[CHECK].metadata["partition"].value == day
        missing = job.execute_in_process(tags={"dagster/partition": never}, instance=instance)
        assert {
            c.check_name: (c.passed, c.metadata["problems"].value)
            for c in missing.get_asset_check_evaluations()
        } == {CHECK: (False, "never materialised")}
