"""The expected bucket owner: every S3 request of the rename, the checks and the handoff carries it, and a
bucket of another account is refused before anything is written.

moto keeps buckets in its default account (123456789012) and does not check ExpectedBucketOwner, so the
project's client goes through a recording `FaultProxy`: it shows each request's headers, and answers as
S3 does (403 AccessDenied) when the expected owner is not the bucket's. UNLOAD's own writes (the
emulator's) do not go through it: Redshift cannot send the header, which is why the unload step checks
the bucket first.
"""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest
from unload_assets_local.s3_fault_proxy import FaultProxy, Request

from unload_assets.component import build_definitions
from unload_assets_tests.support.pipeline_helpers import write_catalogue
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

BUCKET, OWNER, STRANGER = "unload-local", "123456789012", "210987654321"
CATALOGUE = """
targets:
  - name: owned_combine
    description: two staged files, one object
    sql: select id, payload from public.owner_rows order by id
    key_template: exports/owner/combined.csv
    max_file_size_mb: 6
  - name: owned_parts
    description: two staged files, parts and a manifest
    sql: select id, payload from public.owner_rows order by id
    key_template: exports/owner/parts.csv
    max_file_size_mb: 6
    on_split: parts
"""
DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied'
    b"</Message><RequestId>OWNER</RequestId></Error>"
)


def _not_owner(request: Request) -> bool:
    return request.headers.get("x-amz-expected-bucket-owner", OWNER) != OWNER


def _refused(request: Request):
    return 403, [("Content-Type", "application/xml")], DENIED


@pytest.fixture(scope="module")
def proxied(local_stack, stack_env, tmp_path_factory):
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.owner_rows")
        cur.execute(
            "create table public.owner_rows as"
            " select g as id, repeat(md5(g::text), 8) as payload from generate_series(1, 25000) g"
        )
    catalogue = write_catalogue(tmp_path_factory.mktemp("owner"), CATALOGUE)
    with (
        FaultProxy(local_stack.s3.endpoint_url, record=True) as proxy,
        pytest.MonkeyPatch.context() as env,
        dg.instance_for_test() as instance,
    ):
        env.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint_url)
        # As S3 does: a request that expects another owner is refused (moto does not check it).
        proxy.inject("answer", predicate=_not_owner, answer=_refused)
        yield proxy, env, catalogue, instance


def _run(catalogue, instance) -> dg.ExecuteInJobResult:
    defs = build_definitions(catalogue)
    keys = [asset_key_for("owned_combine"), asset_key_for("owned_parts")]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    assert job is not None
    return job.execute_in_process(asset_selection=keys, instance=instance, raise_on_error=False)


def test_every_request_of_a_morning_carries_the_expected_owner(proxied):
    proxy, env, catalogue, instance = proxied
    env.setenv("UNLOAD_EXPECTED_BUCKET_OWNER", OWNER)
    proxy.requests.clear()
    result = _run(catalogue, instance)
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    seen = [r for r in proxy.requests if r.path.startswith(f"/{BUCKET}")]
    operations = {r.operation for r in seen}
    # the owner check, the rename (lock, copies, multipart, manifest, deletes), the checks, the handoff
    assert {"ListObjects", "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPartCopy",
            "CompleteMultipartUpload", "HeadObject", "GetObject", "DeleteObjects"} <= operations  # fmt: skip
    without = [f"{r.method} {r.path}" for r in seen if r.headers.get("x-amz-expected-bucket-owner") != OWNER]
    assert without == []
    copies = [r for r in seen if r.operation in ("CopyObject", "UploadPartCopy")]
    assert copies and all(r.headers.get("x-amz-source-expected-bucket-owner") == OWNER for r in copies)


def test_a_bucket_of_another_account_is_refused_before_anything_is_written(proxied, local_stack):
    proxy, env, catalogue, instance = proxied
    env.setenv("UNLOAD_EXPECTED_BUCKET_OWNER", STRANGER)
    proxy.requests.clear()
    result = _run(catalogue, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    text = failure.step_failure_data.error.message if failure.step_failure_data.error else ""
    assert failure.step_key and failure.step_key.startswith("unloads_unpartitioned.unload_")
    assert f"Bucket s3://{BUCKET} refused a request that expects it to belong to account {STRANGER}" in text
    assert "needs s3:ListBucket on arn:aws:s3:::unload-local" in text and "Nothing was unloaded" in text
    assert {r.operation for r in proxy.requests} == {"ListObjects"}  # one look, nothing written
    s3 = local_stack.s3.client()
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="_staging/owned_").get("KeyCount") == 0
