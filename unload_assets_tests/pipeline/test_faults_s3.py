"""S3 misbehaving under UNLOAD and the rename: 500s, resets, lost answers, slow replies, a killed worker.

The project's S3 client (AWS_ENDPOINT_URL_S3) and a second Redshift emulator (its UNLOAD writes) both
go through a `FaultProxy`. Each run writes a new generation of the same rows; `fault_harness` judges what
a reader sees at the final keys: one generation, complete, or nothing (a parts output whose manifest is
withdrawn while its parts are rewritten). That is checked while the writer waits on every injected fault
and after every run; a failed run is then re-executed from failure and must complete the new output.
"""

from __future__ import annotations

import os
import signal
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from xml.sax.saxutils import escape

import dagster as dg
import pytest
from unload_assets_local.emulator.server import RedshiftEmulator
from unload_assets_local.s3_fault_proxy import FaultProxy

from unload_assets_tests.support.fault_harness import (
    BUCKET,
    CATALOGUE,
    Harness,
    create_tables,
    fparts_job,
    step_retries,
    target_retries,
    wait_for_child,
)
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

ROWS = 45_000  # ~12 MB of CSV in 6 MB files: two pieces big enough for UploadPartCopy, and a small one


@pytest.fixture(scope="module")
def harness(local_stack, stack_env, tmp_path_factory) -> Iterator[Harness]:
    dsn = local_stack.postgres.dsn()
    create_tables(dsn, ROWS)
    workdir = tmp_path_factory.mktemp("faults")
    (workdir / "home").mkdir()
    (workdir / "catalogue.yaml").write_text(CATALOGUE)
    with (
        FaultProxy(local_stack.s3.endpoint_url) as proxy,
        RedshiftEmulator(
            pg_host="127.0.0.1",
            pg_port=local_stack.postgres.port,
            s3_endpoint_url=proxy.endpoint_url,  # UNLOAD's own writes go through the proxy too
            listen_port=0,
            superuser_dsn=local_stack.postgres.dsn(superuser=True),
            tls=local_stack.tls.server_context(),  # the stack's `.env` connects with verify-full
            logins={local_stack.postgres.user: local_stack.postgres.password},
        ) as emulator,
        pytest.MonkeyPatch.context() as env,
        dg.instance_for_test(temp_dir=str(workdir / "home")) as instance,
    ):
        env.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint_url)
        env.setenv("REDSHIFT_PORT", str(emulator.port))
        env.setenv("FAULT_CATALOGUE", str(workdir / "catalogue.yaml"))
        harness = Harness(proxy, instance, dsn, local_stack.s3.client(), ROWS)
        harness.prime()  # the previous complete output that the faults must not damage
        yield harness
        harness.remove_outputs()
        print(
            f"\nS3 faults injected: {proxy.total_injected} {dict(proxy.injected)}\n"
            f"runs: {harness.runs}; final-output views verified complete: {harness.verified}"
        )


@pytest.mark.parametrize("target", ["fcombine", "fparts"])
def test_random_faults_on_every_request(harness, target):
    # Seeded 500s, resets before and after S3 acted, and slow answers, on UNLOAD's writes and the rename.
    new = harness.generation(target, "random", rows=ROWS - 5_000)  # 3 pieces -> 2
    hook = harness.watch(target, new)
    for seed, (kind, fraction) in enumerate(
        [("error", 0.06), ("reset", 0.03), ("reset_after", 0.03), ("slow", 0.05)]
    ):
        harness.faults.inject(kind, fraction=fraction, seed=seed, delay=0.05, on_inject=hook)
    before = harness.faults.total_injected
    harness.settle(target, harness.run(target), new)
    assert harness.faults.total_injected - before >= 3


def test_complete_multipart_failing_a_whole_attempt_is_healed_by_the_targets_retry(harness):
    new = harness.generation("fcombine", "cmu-fails")
    rule = harness.faults.inject(
        "error",
        operation="CompleteMultipartUpload",
        path_contains="/exports/",
        times=6,  # every boto attempt of the first rename attempt
        on_inject=harness.watch("fcombine", new),
    )
    result = harness.settle("fcombine", harness.run("fcombine"), new)
    assert rule.fired == 6 and step_retries(result) == []
    assert [(r.what, r.attempt) for r in target_retries(harness.instance, result.run_id)] == [
        ("rename of 'fcombine'", 1)
    ]


def test_the_nth_upload_part_copy_reset_is_healed_by_the_targets_retry(harness):
    new = harness.generation("fcombine", "copy-reset")
    # Part 2's UploadPartCopy is reset through all 6 boto attempts: the first rename attempt fails.
    rule = harness.faults.inject(
        "reset",
        operation="UploadPartCopy",
        predicate=lambda r: r.query.get("partNumber") == ["2"],
        times=6,
        on_inject=harness.watch("fcombine", new),
    )
    result = harness.settle("fcombine", harness.run("fcombine"), new)
    assert rule.fired == 6 and step_retries(result) == []
    assert [(r.what, r.attempt) for r in target_retries(harness.instance, result.run_id)] == [
        ("rename of 'fcombine'", 1)
    ]


def test_a_lost_complete_multipart_answer(harness):
    new = harness.generation("fcombine", "cmu-lost")
    # S3 completes the upload but the answer never arrives; boto's retry then finds no such upload.
    rule = harness.faults.inject(
        "reset_after", operation="CompleteMultipartUpload", path_contains="/exports/", times=1
    )
    harness.settle("fcombine", harness.run("fcombine"), new)
    assert rule.fired == 1


def _clear_flagged_leftover(harness: Harness, result: dg.ExecuteJobResult, new: str) -> None:
    """A delivered run whose staging delete failed left its own staged files only: removed here."""
    leftovers = harness.staging_left("fcombine")
    assert leftovers and all(result.run_id in key for key in leftovers)
    harness.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in leftovers]})
    harness.current["fcombine"] = new


def test_staging_delete_failing_after_delivery_leaves_a_flagged_leftover(harness):
    new = harness.generation("fcombine", "staging-stays")
    rule = harness.faults.inject(
        "error", operation="DeleteObjects", predicate=lambda r: b"_staging/" in r.body
    )
    result = harness.run("fcombine")
    harness.faults.clear()
    assert result.success and rule.fired == 6  # delivered: the run does not fail over its clean-up
    assert harness.look("fcombine", {new}).complete == {"object": new}
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert str(check.metadata["problems"].value).startswith("staging not cleaned: _staging/fcombine/")
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["staging_cleaned"].value is False
    _clear_flagged_leftover(harness, result, new)


def test_unload_writes_failing_fail_the_run_before_anything_final(harness):
    old, new = harness.current["fparts"], harness.generation("fparts", "unload-fails")
    # The second staged file's writes fail (UNLOAD's own S3 client retries, then gives up).
    rule = harness.faults.inject(
        "error",
        path_contains="/_staging/fparts/",
        predicate=lambda r: r.method == "PUT" and r.path.endswith("001"),
    )
    result = harness.run("fparts")
    assert not result.success and rule.fired >= 3
    assert harness.look("fparts", {old}).complete == {"manifest": old}
    harness.settle("fparts", result, new)
    assert harness.staging_left("fparts") == []


def test_deletes_failing_while_parts_shrink_fail_the_run_cleanly(harness):
    three = harness.generation(
        "fparts", "three-parts"
    )  # the state this test starts from, whatever ran before
    harness.settle("fparts", harness.run("fparts"), three)
    assert len([k for k in harness.listing("exports/faults/fparts/") if ".part-" in k]) == 3
    new = harness.generation("fparts", "shrink", rows=ROWS - 5_000)  # 3 parts -> 2
    rule = harness.faults.inject("error", operation="DeleteObjects", on_inject=harness.watch("fparts", new))
    result = harness.run("fparts")
    assert not result.success and rule.fired == 4 * 6  # every boto attempt of every op attempt
    harness.settle("fparts", result, new)


def test_run_worker_killed_between_verified_copy_and_staging_delete(harness):
    # A real SIGKILL of the process running the run (forked, so it starts in milliseconds), sent while
    # its DeleteObjects of the staged files is on the wire; the instance then marks the run failed, as
    # run monitoring does for a dead worker, and the run is re-executed from failure.
    new = harness.generation("fparts", "killed")
    worker: list[int] = []
    rule = harness.faults.inject(
        "reset",
        operation="DeleteObjects",
        predicate=lambda r: b"_staging/" in r.body,
        times=1,
        on_inject=lambda _: os.kill(worker[0], signal.SIGKILL),
    )
    ref = harness.instance.get_ref()
    pid = os.fork()
    if pid == 0:  # the run worker
        try:
            with dg.DagsterInstance.from_ref(ref) as instance:
                dg.execute_job(dg.reconstructable(fparts_job), instance=instance)
        finally:
            os._exit(0)
    worker.append(pid)
    status = wait_for_child(pid, timeout=120)
    assert rule.fired == 1 and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    run = harness.instance.get_runs(limit=1)[0]
    assert run.status == dg.DagsterRunStatus.STARTED  # nobody told Dagster: the worker just vanished
    assert harness.look("fparts", {new}).complete == {"manifest": new}  # copied, verified, committed
    assert len(harness.staging_left("fparts")) >= 2
    harness.instance.report_run_failed(run, message="run worker killed (SIGKILL)")
    harness.settle("fparts", harness.run("fparts", from_failure=run.run_id), new)


# ---- S3 answers that are wrong rather than missing: a lying size, per-key delete errors, a short read ----


def _failure_text(result: dg.ExecuteJobResult) -> str:
    """Every step failure's messages, causes included (Dagster wraps the op's own error)."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def _size_off_by_one(request, reply):
    status, headers, body = reply
    lied = [(n, str(int(v) - 1) if n.lower() == "content-length" else v) for n, v in headers]
    return status, lied, body


def _refused_per_key(request):
    """S3's 200 DeleteResult naming every requested key as not deleted (and deleting none of them)."""
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    keys = [k.text or "" for k in ET.fromstring(request.body).iter(f"{ns}Key")]
    errors = "".join(
        f"<Error><Key>{escape(k)}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        for k in keys
    )
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{ns[1:-1]}">{errors}</DeleteResult>'
    return 200, [("Content-Type", "application/xml")], body.encode()


def test_a_final_object_of_the_wrong_size_fails_the_run_and_keeps_staging(harness):
    new = harness.generation("fcombine", "size-lie")
    final = "/exports/faults/fcombine/rows.csv"
    rule = harness.faults.inject(
        "rewrite",
        operation="HeadObject",
        predicate=lambda r: r.path.endswith(final),
        rewrite=_size_off_by_one,
    )
    result = harness.run("fcombine")
    assert not result.success and rule.fired >= 1
    assert "bytes after the copy, expected" in _failure_text(result)
    assert harness.staging_left("fcombine")  # nothing is deleted after a verification that failed
    harness.settle("fcombine", result, new)


def test_per_key_delete_errors_on_stale_parts_fail_the_run_and_lose_nothing(harness):
    three = harness.generation("fparts", "three-again")
    harness.settle("fparts", harness.run("fparts"), three)
    new = harness.generation("fparts", "per-key", rows=ROWS - 5_000)  # 3 parts -> 2: part 3 is stale
    rule = harness.faults.inject(
        "answer",
        operation="DeleteObjects",
        predicate=lambda r: b"exports/faults/fparts/" in r.body,
        answer=_refused_per_key,
        on_inject=harness.watch("fparts", new),
    )
    result = harness.run("fparts")
    assert not result.success and rule.fired >= 1
    assert "could not delete 1 of 1 objects" in _failure_text(result) and "AccessDenied" in _failure_text(
        result
    )
    harness.settle("fparts", result, new)


def test_per_key_delete_errors_on_staging_leave_a_flagged_leftover(harness):
    new = harness.generation("fcombine", "staging-per-key")
    rule = harness.faults.inject(
        "answer",
        operation="DeleteObjects",
        predicate=lambda r: b"_staging/" in r.body,
        answer=_refused_per_key,
    )
    result = harness.run("fcombine")
    harness.faults.clear()
    assert result.success and rule.fired >= 1
    assert harness.look("fcombine", {new}).complete == {"object": new}
    [check] = result.get_asset_check_evaluations()
    # The objects are fine; what is wrong is the leftover, named.
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    problems = str(check.metadata["problems"].value).splitlines()
    assert problems and all(line.startswith("staging not cleaned: _staging/fcombine/") for line in problems)
    _clear_flagged_leftover(harness, result, new)


def test_short_reads_of_staged_files_fail_the_run_before_anything_final(harness):
    old, new = harness.current["fcombine"], harness.generation("fcombine", "short-read")
    # Every GetObject under staging (the UNLOAD manifest the rename reads first) stops half way.
    rule = harness.faults.inject("short", operation="GetObject", path_contains="/_staging/fcombine/")
    result = harness.run("fcombine")
    assert not result.success and rule.fired >= 1
    assert harness.look("fcombine", {old}).complete == {"object": old}  # the previous output, untouched
    harness.settle("fcombine", result, new)


def _slow_down(request):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        "<Message>Please reduce your request rate.</Message><RequestId>SLOWDOWN</RequestId></Error>"
    )
    return 503, [("Content-Type", "application/xml")], body.encode()


def test_s3_throttling_inside_unload_is_retried_by_the_op(harness):
    # Every write of the first attempt's UNLOAD is throttled (its own S3 client retries, then gives up):
    # Redshift's XX000 "S3ServiceException ... SlowDown" must be retried like any transient error.
    new = harness.generation("fcombine", "slowed-down")
    rule = harness.faults.inject(
        "answer",
        predicate=lambda r: (
            r.method in ("PUT", "POST") and "/_staging/fcombine/" in r.path and "/attempt-0/" in r.path
        ),
        answer=_slow_down,
    )
    result = harness.run("fcombine")
    assert rule.fired >= 3 and result.success
    [retry] = target_retries(harness.instance, result.run_id)
    assert retry.what == "UNLOAD of 'fcombine'" and retry.attempt == 1
    assert "Error SlowDown" in retry.error and "TransientRedshiftError" in retry.error
    harness.settle("fcombine", result, new)


def test_a_check_that_cannot_be_evaluated_fails_as_a_check_and_the_delivery_stands(harness):
    # The check's listing of the staging folder (MaxKeys=10, only the check asks for that) fails through
    # every boto retry: the target is still delivered and materialised; its check says it could not judge.
    new = harness.generation("fcombine", "check-error")
    rule = harness.faults.inject(
        "error",
        operation="ListObjects",  # the fault proxy's name for a bucket GET; V2 or not
        predicate=lambda r: r.query.get("max-keys") == ["10"],
        times=20,
    )
    result = harness.run("fcombine")
    harness.faults.clear()
    assert result.success and rule.fired >= 1
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [asset_key_for("fcombine")]
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    reason = str(check.metadata["problems"].value)
    assert "ListObjectsV2" in reason and "InternalError" in reason, reason
    assert harness.look("fcombine", {new}).complete == {"object": new}
    harness.current["fcombine"] = new
