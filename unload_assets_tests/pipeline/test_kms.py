"""SSE-KMS end to end: a morning with a KMS key, every object written with it, and a check that fails when a
final object is re-encrypted with another key.

moto records what each write asked for (ServerSideEncryption, SSEKMSKeyId, BucketKeyEnabled) and
HeadObject answers it back; it does not encrypt, and it does not ask KMS whether the caller may use the
key (that is the policies' part, deploy/iam/). The keys are created in moto's KMS all the same, so their
ARNs are the ones AWS would hand out.
"""

from __future__ import annotations

import boto3
import dagster as dg
import psycopg2
import pytest
from unload_assets_local.s3server import REGION

from unload_assets.component import build_definitions
from unload_assets_tests.support.pipeline_helpers import write_catalogue
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
ROWS = 25_000  # ~7 MB of CSV in 6 MB files: one piece big enough for UploadPartCopy, one small
CATALOGUE = """
defaults:
  kms_key_id: {key}
targets:
  - name: kms_combine
    description: two staged files, one final object
    sql: select id, payload from public.kms_rows order by id
    key_template: exports/kms/combined.csv
    max_file_size_mb: 6
  - name: kms_parts
    description: two staged files, two parts and a COPY manifest, another key and a bucket key
    sql: select id, payload from public.kms_rows order by id
    key_template: exports/kms/parts.csv
    max_file_size_mb: 6
    on_split: parts
    kms_key_id: {other}
    bucket_key: true
  - name: kms_empty
    description: a day without rows
    sql: select id, payload from public.kms_rows where id < 0
    key_template: exports/kms/empty.csv
"""
TARGETS = ("kms_combine", "kms_parts", "kms_empty")


@pytest.fixture(scope="module")
def morning(local_stack, stack_env, tmp_path_factory):
    """One run of the three targets; the two keys, the catalogue, the instance and the run's result."""
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.kms_rows")
        cur.execute(
            "create table public.kms_rows as"
            " select g as id, repeat(md5(g::text), 8) as payload from generate_series(1, %s) g",
            (ROWS,),
        )
    kms = boto3.client("kms", endpoint_url=local_stack.s3.endpoint_url, region_name=REGION)
    key, other = (kms.create_key(Description=f"unload test {n}")["KeyMetadata"]["Arn"] for n in (1, 2))
    catalogue = write_catalogue(tmp_path_factory.mktemp("kms"), CATALOGUE.format(key=key, other=other))
    with dg.instance_for_test() as instance:
        result = _run(catalogue, instance, dg.AssetSelection.assets(*map(asset_key_for, TARGETS)))
        yield key, other, catalogue, instance, result


def _run(catalogue, instance, selection: dg.AssetSelection) -> dg.ExecuteInJobResult:
    defs = build_definitions(catalogue)
    job = dg.define_asset_job("kms_morning", selection=selection)
    return (
        dg.Definitions(
            assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[job]
        )
        .resolve_job_def("kms_morning")
        .execute_in_process(instance=instance, raise_on_error=False)
    )


def _final_objects(s3) -> dict[str, dict]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/kms/").get("Contents", [])
    return {o["Key"]: s3.head_object(Bucket=BUCKET, Key=o["Key"]) for o in listing}


def test_every_final_object_part_and_manifest_carries_its_targets_key(morning, local_stack):
    key, other, _, _, result = morning
    assert result.success
    checks = {c.asset_key.path[-1]: c for c in result.get_asset_check_evaluations()}
    empty = checks.pop("kms_empty")  # warns that the day had no rows, and only that
    assert not empty.passed and empty.metadata["problems"].value == "the UNLOAD wrote no rows"
    assert all(c.passed for c in checks.values()) and len(checks) == 2, checks
    heads = _final_objects(local_stack.s3.client())
    assert sorted(heads) == [
        "exports/kms/combined.csv",
        "exports/kms/empty.csv",
        "exports/kms/parts.csv.manifest",
        "exports/kms/parts.part-001.csv",
        "exports/kms/parts.part-002.csv",
    ]
    for name, head in heads.items():
        wanted = other if "/parts." in name else key
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", wanted), name
    assert all(head.get("BucketKeyEnabled") for name, head in heads.items() if "/parts." in name)
    delivered = {
        e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    # The combined object was stitched server-side: far fewer bytes passed the worker than it holds.
    combined = delivered["kms_combine"]
    assert str(combined["delivered_as"].value).startswith("combine")
    assert combined["client_bytes"].value < heads["exports/kms/combined.csv"]["ContentLength"] / 2
    assert heads["exports/kms/empty.csv"]["ContentLength"] == 0  # the empty day: a PutObject


def test_a_final_object_re_encrypted_with_another_key_fails_its_check(morning, local_stack):
    key, other, catalogue, instance, _ = morning
    s3 = local_stack.s3.client()
    final = "exports/kms/combined.csv"
    s3.copy_object(
        Bucket=BUCKET, Key=final, CopySource={"Bucket": BUCKET, "Key": final},
        MetadataDirective="COPY", ServerSideEncryption="aws:kms", SSEKMSKeyId=other,
    )  # fmt: skip
    checks_only = _run(catalogue, instance, dg.AssetSelection.checks_for_assets(asset_key_for("kms_combine")))
    [present] = checks_only.get_asset_check_evaluations()
    assert not present.passed and present.severity == dg.AssetCheckSeverity.ERROR
    assert present.metadata["problems"].value == f"{final}: encrypted with KMS key {other}, not {key}"
