"""The delivery check (`delivered`) shown failing: each fault is made in S3 (or in the recorded metadata)
after a real delivery, and a checks-only run must judge it, never pass it, naming each problem."""

from __future__ import annotations

import dagster as dg
import pytest

from unload_assets.component import build_definitions
from unload_assets_tests.support.pipeline_helpers import get_bytes, materialise, write_catalogue
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
CATALOGUE = """
targets:
  - name: judged
    description: a small delivery for the checks to judge
    sql: select sale_id, amount from public.sales where sale_id <= 500 order by sale_id
    key_template: exports/checks/judged.csv
    format: csv
  - name: judged_empty
    description: a select that finds nothing
    sql: select sale_id, amount from public.sales where sale_id < 0
    key_template: exports/checks/empty.csv
    format: csv
    header: true
"""
FINAL = "exports/checks/judged.csv"


@pytest.fixture()
def delivered(local_stack, stack_env, tmp_path):
    """`judged` delivered once; returns the catalogue, the instance and the object's bytes."""
    catalogue = write_catalogue(tmp_path, CATALOGUE)
    with dg.instance_for_test() as instance:
        materialise(catalogue, "judged", instance=instance)
        yield catalogue, instance, get_bytes(local_stack.s3.client(), BUCKET, FINAL)


def judge(catalogue, instance, target: str = "judged") -> dg.AssetCheckEvaluation:
    """A checks-only run of `target`: what its check says of its latest materialisation."""
    key = asset_key_for(target)
    defs = build_definitions(catalogue)
    checks_only = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(key))
    job = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[checks_only]
    ).resolve_job_def("checks_only")
    result = job.execute_in_process(instance=instance)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "delivered"
    return evaluation


def _problems(evaluation: dg.AssetCheckEvaluation) -> str:
    return str(evaluation.metadata["problems"].value)


def test_an_untouched_delivery_passes(delivered):
    catalogue, instance, _ = delivered
    check = judge(catalogue, instance)
    assert check.passed and _problems(check) == "none"
    assert check.metadata["objects_checked"].value == 1 and check.metadata["dagster/row_count"].value == 500


def test_a_deleted_final_object_fails_as_an_error(delivered, local_stack):
    catalogue, instance, _ = delivered
    local_stack.s3.client().delete_object(Bucket=BUCKET, Key=FINAL)
    present = judge(catalogue, instance)
    assert not present.passed and present.severity == dg.AssetCheckSeverity.ERROR
    assert _problems(present).startswith(f"{FINAL}: ") and "404" in _problems(present)


def test_a_truncated_final_object_fails_naming_both_sizes(delivered, local_stack):
    catalogue, instance, body = delivered
    local_stack.s3.client().put_object(Bucket=BUCKET, Key=FINAL, Body=body[:-10])
    present = judge(catalogue, instance)
    assert not present.passed and present.severity == dg.AssetCheckSeverity.ERROR
    assert _problems(present) == f"{FINAL}: {len(body) - 10} bytes in S3, {len(body)} recorded"


def test_a_replaced_object_of_the_same_size_fails(delivered, local_stack):
    catalogue, instance, body = delivered
    forged = body.replace(b"1", b"7")  # same size, other figures, written by someone else
    assert forged != body and len(forged) == len(body)
    local_stack.s3.client().put_object(Bucket=BUCKET, Key=FINAL, Body=forged)
    present = judge(catalogue, instance)
    assert not present.passed and present.severity == dg.AssetCheckSeverity.ERROR
    assert _problems(present) == f"{FINAL}: not the object this delivery wrote (replaced since)"


def test_zero_rows_warn_and_the_delivery_still_checks(local_stack, stack_env, tmp_path):
    catalogue = write_catalogue(tmp_path, CATALOGUE)
    with dg.instance_for_test() as instance:
        materialise(catalogue, "judged_empty", instance=instance)
        checks = judge(catalogue, instance, "judged_empty")
    # Only a warning: the empty object is there, checked, and staging is clean.
    assert not checks.passed and checks.severity == dg.AssetCheckSeverity.WARN
    assert checks.metadata["dagster/row_count"].value == 0
    assert _problems(checks) == "the UNLOAD wrote no rows"


def test_a_materialisation_with_no_metadata_passes_nothing(local_stack, stack_env, tmp_path):
    # Reported by hand (the UI's "report materialisation", say): nothing says what was delivered.
    catalogue = write_catalogue(tmp_path, CATALOGUE)
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset_key_for("judged")))
        checks = judge(catalogue, instance)
    assert (checks.passed, checks.severity, _problems(checks)) == (
        False,
        dg.AssetCheckSeverity.ERROR,
        "no s3_uri recorded",
    )


def test_recorded_metadata_without_final_objects_does_not_pass(local_stack, stack_env, tmp_path):
    # The metadata names the address but lists no objects: an empty list must not pass vacuously.
    catalogue = write_catalogue(tmp_path, CATALOGUE)
    with dg.instance_for_test() as instance:
        materialise(catalogue, "judged", instance=instance)
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=asset_key_for("judged"),
                metadata={"s3_uri": dg.MetadataValue.url(f"s3://{BUCKET}/{FINAL}"), "final_objects": []},
            )
        )
        present = judge(catalogue, instance)
    assert not present.passed and present.severity == dg.AssetCheckSeverity.ERROR
    # Each problem on a line of its own, the objects first (this metadata says nothing of staging or rows).
    assert _problems(present).splitlines() == [
        "the materialisation recorded no final objects",
        "no staging folder recorded",
        "the UNLOAD wrote no rows",
    ]


def test_a_staged_file_left_behind_fails_as_an_error_beside_a_warning(delivered, local_stack):
    catalogue, instance, _ = delivered
    staging = str(instance.get_latest_materialization_event(asset_key_for("judged")).asset_materialization
                  .metadata["staging_uri"].value)  # fmt: skip
    left = staging.split("/", 3)[3] + "attempt-0/0000_part_00"
    local_stack.s3.client().put_object(Bucket=BUCKET, Key=left, Body=b"left behind")
    check = judge(catalogue, instance)
    # An error wins over any warning: the check is an error, and names the file.
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert _problems(check) == f"staging not cleaned: {left}"
