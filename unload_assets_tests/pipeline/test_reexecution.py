"""A run whose rename step dies between the verified copy and the staging delete, then re-executed."""

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from unload_assets.component import build_definitions
from unload_assets_tests.support.pipeline_helpers import get_bytes, job_with_env, write_catalogue
from unload_assets_tests.support.this_project import NAMES, asset_key_for

pytestmark = pytest.mark.stack
# An unpartitioned target's assets are the graph `unloads_unpartitioned` (assets.py).
UNLOAD_STEP = f"{NAMES.graph('unpartitioned')}.{NAMES.unload_op('unpartitioned')}"
RENAME_STEP = f"{NAMES.graph('unpartitioned')}.{NAMES.rename_op('unpartitioned')}"

CATALOGUE = """
targets:
  - name: crashy
    description: dies once before the staging delete
    sql: select sale_id, note from public.sales order by sale_id
    key_template: exports/crashy/sales.csv
    format: csv
"""


class CrashingS3Resource(S3Resource):
    """A real S3 client whose first `crashes` DeleteObjects calls kill the step process (like SIGKILL)."""

    crash_log: str
    crashes: int

    def get_client(self):
        client = super().get_client()

        def die(**_: object) -> None:
            log = Path(self.crash_log)
            done = len(log.read_text().splitlines()) if log.exists() else 0
            if done < self.crashes:
                with log.open("a") as handle:
                    handle.write("killed before DeleteObjects\n")
                os._exit(137)

        client.meta.events.register("before-call.s3.DeleteObjects", die)
        return client


def crashy_job(env: dict[str, str]) -> dg.JobDefinition:
    """Module-level so that the multiprocess executor can rebuild it in each step process, from `env`."""
    defs = build_definitions(env["CRASH_TEST_CATALOGUE"])
    resources = {
        **defs.resources,
        NAMES.s3: CrashingS3Resource(
            endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
            crash_log=env["CRASH_TEST_LOG"],
            crashes=int(env["CRASH_TEST_CRASHES"]),
        ),
    }
    crashy = dg.define_asset_job("crashy_job", selection=[asset_key_for("crashy")])
    defs = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=resources, jobs=[crashy]
    )
    return defs.resolve_job_def("crashy_job")


def _prepare(tmp_path, crashes: int) -> tuple[Path, object]:
    """The crash log, and the job that crashes `crashes` times (its settings passed to every step)."""
    env = {
        "CRASH_TEST_CATALOGUE": str(write_catalogue(tmp_path, CATALOGUE)),
        "CRASH_TEST_LOG": str(tmp_path / "crashes.log"),
        "CRASH_TEST_CRASHES": str(crashes),
    }
    (tmp_path / "home").mkdir()
    return tmp_path / "crashes.log", job_with_env(__name__, "crashy_job", env)


def _assert_exactly_final(s3, expected_body: bytes | None = None) -> None:
    listing = s3.list_objects_v2(Bucket="unload-local", Prefix="exports/crashy/")["Contents"]
    assert [o["Key"] for o in listing] == ["exports/crashy/sales.csv"]
    assert s3.list_objects_v2(Bucket="unload-local", Prefix="_staging/crashy/").get("KeyCount", 0) == 0
    if expected_body is not None:
        assert get_bytes(s3, "unload-local", "exports/crashy/sales.csv") == expected_body


def test_a_killed_rename_step_is_retried_within_the_run(local_stack, stack_env, tmp_path):
    crash_log, job = _prepare(tmp_path, crashes=1)
    with (
        dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance,
        dg.execute_job(job, instance=instance) as result,
    ):
        assert result.success
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert [e.step_key for e in retries] == [RENAME_STEP]
    assert len(crash_log.read_text().splitlines()) == 1
    _assert_exactly_final(local_stack.s3.client())


def test_reexecution_after_crashes_between_copy_and_delete(local_stack, stack_env, tmp_path):
    # Every attempt of the first run dies (1 + 3 retries): the run fails with copies made, staging kept.
    crash_log, job = _prepare(tmp_path, crashes=4)
    s3 = local_stack.s3.client()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = dg.execute_job(job, instance=instance)
        assert not first.success and len(crash_log.read_text().splitlines()) == 4
        assert s3.list_objects_v2(Bucket="unload-local", Prefix="_staging/crashy/").get("KeyCount", 0) >= 2
        final = get_bytes(s3, "unload-local", "exports/crashy/sales.csv")
        # The handoff from the unload op sits in S3, not on this machine: the re-execution below runs
        # with the first run's local artifact storage gone, as in a fresh pod.
        handoff = f"_staging/_dagster/storage/{first.run_id}/{UNLOAD_STEP}/staged"
        assert s3.head_object(Bucket="unload-local", Key=handoff)["ContentLength"] > 0
        local = tmp_path / "home" / "storage"
        # (Compute logs are the instance's business: S3ComputeLogManager in production, see deploy/.)
        assert [p for p in local.rglob("*") if p.is_file() and "compute_logs" not in p.parts] == []
        shutil.rmtree(local, ignore_errors=True)

        with dg.execute_job(
            job,
            instance=instance,
            reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
        ) as second:
            assert second.success
            step_keys = {e.step_key for e in second.all_events if e.is_step_success}
            assert step_keys == {RENAME_STEP}  # the checks run inside the rename step
            checks = {c.check_name: c.passed for c in second.get_asset_check_evaluations()}
            assert checks == {"delivered": True}
    _assert_exactly_final(s3, final)
