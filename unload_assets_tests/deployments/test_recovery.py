"""No human needed after a single fault (issue 28): deploy/dagster.yaml's run retries and run monitoring,
for real, in the production shape (support/production.py), each fault at a chosen moment.

- The daemon is SIGKILLed while it launches a run: its StartRun request is held by a proxy in front of
  the code server and never delivered, so the run stays STARTING; run monitoring fails it once its
  start timeout has passed, and run retries launch its retry, which delivers.
- A run worker (the run's process, its step processes with it) is SIGKILLed while its rename step runs:
  the code server sees its run process die and fails the run; run retries re-execute it from asset
  failure, and the crash-safe rename under its fenced lock delivers each output once.

Each ends with every output equal to its query run directly, one Slack message for the run naming the
retry, nothing left in staging, no open multipart upload, and no action by a person (`ManualActions`).
The timeouts are the test instance's (`INSTANCE`), small; deploy/dagster.yaml keeps its own. The Celery
worker lost mid-UNLOAD is in test_celery.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest

from unload_assets.resources.slack import MARKER_EVENT
from unload_assets_tests.support.pipeline_helpers import csv_rows, get_bytes, query_as_text, write_catalogue
from unload_assets_tests.support.production import ProductionShape, keep_logs, kill_tree, production_env
from unload_assets_tests.support.recovery import (
    ManualActions,
    PausableProxy,
    daemon_evaluated_sensors,
    run_worker_pid,
    step_started,
)
from unload_assets_tests.support.this_project import ANNOUNCED_TAG, NAMES

pytestmark = [
    pytest.mark.production,
    pytest.mark.stack,
    pytest.mark.timeout(1200),
]  # above the sum of the test's own deadlines, which name what is late

BUCKET = "unload-local"
TARGETS = 2
TARGET = """
  - name: rec_{n}
    description: one of {total} slices of the sales table
    sql: select sale_id, amount from public.sales where mod(sale_id, {total}) = {n} order by sale_id
    key_template: exports/recovery/{n}.csv
    format: csv
"""
# Small timeouts, for this test instance only: a run that has not started within 30 s is failed, checked
# every 5 s. Compute logs are staged in each service's own folder, so that what stays there shows.
INSTANCE: dict[str, Any] = {
    "run_monitoring": {"start_timeout_seconds": 30, "poll_interval_seconds": 5},
    "compute_logs": {"config": {"local_dir": "{home}/compute-logs", "upload_interval": 5}},
}
RETRY_TAG = "dagster/auto_retry_run_id"
WAIT = 300  # seconds for a fault to end in a delivered, announced run


@dataclass
class Recovery:
    shape: ProductionShape
    proxy: PausableProxy  # between the daemon and the code server
    instance: dg.DagsterInstance
    actions: ManualActions


@pytest.fixture(scope="module")
def recovery(local_stack, stack_env, tmp_path_factory) -> Iterator[Recovery]:
    root = tmp_path_factory.mktemp("recovery")
    catalogue = "targets:" + "".join(TARGET.format(n=n, total=TARGETS) for n in range(TARGETS))
    path = write_catalogue(root, catalogue, name="unload_targets.yaml")
    env = production_env(local_stack, stack_env, database="dagster_recovery", catalogue=path)
    proxy = PausableProxy()
    shape = ProductionShape(root / "services", env, instance=INSTANCE, daemon_code_server_port=proxy.port)
    proxy.start(shape.grpc_port)
    instance = None
    try:
        started = time.time()
        shape.start()
        instance = shape.instance()
        sensors = (NAMES.success_sensor, NAMES.failure_sensor)
        _until(
            "the daemon's first sensor ticks",
            lambda: daemon_evaluated_sensors(instance, sensors, started),
            shape,
        )
        yield Recovery(shape, proxy, instance, ManualActions(shape.client))
    finally:
        if instance is not None:
            instance.dispose()
        shape.stop()
        proxy.stop()
        keep_logs(root / "services", "recovery")


def _until(what: str, check: Callable[[], Any], shape: ProductionShape, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}\n{shape.daemon.tail()}"
        time.sleep(0.25)
    return value


def _run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run


def _retried_and_announced(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The run's retry once it succeeded and both runs are announced (or None)."""
    retry = _run(instance, run_id).tags.get(RETRY_TAG)
    if not retry:
        return None
    retried = _run(instance, retry)
    if retried.status == dg.DagsterRunStatus.FAILURE:
        raise AssertionError(f"the retry {retry} failed too")
    done = retried.status == dg.DagsterRunStatus.SUCCESS
    announced = ANNOUNCED_TAG in retried.tags and ANNOUNCED_TAG in _run(instance, run_id).tags
    return retry if done and announced else None


def _report(what: str, instance: dg.DagsterInstance, fault_at: float, run_id: str, retry: str) -> None:
    """What the fault cost, printed (`pytest -s`): until the run was failed, and until its retry delivered."""
    failed, retried = instance.get_run_record_by_id(run_id), instance.get_run_record_by_id(retry)
    assert failed is not None and retried is not None
    print(
        f"\n{what}: failed {failed.end_time - fault_at:.0f} s after the fault, "  # type: ignore[operator]
        f"the retry delivered {retried.end_time - fault_at:.0f} s after it"  # type: ignore[operator]
    )


def _assert_delivered_once(local_stack) -> None:
    """Every output equals its query run directly; nothing else under the exports, nothing left in
    staging, no multipart upload open."""
    s3, dsn = local_stack.s3.client(), local_stack.postgres.dsn()
    for n in range(TARGETS):
        text = get_bytes(s3, BUCKET, f"exports/recovery/{n}.csv").decode()
        direct = (
            f"select sale_id, amount from public.sales where mod(sale_id, {TARGETS}) = {n} order by sale_id"
        )
        assert csv_rows(text, header=False)[1] == query_as_text(dsn, direct), f"rec_{n}"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/recovery/").get("Contents", [])
    assert sorted(o["Key"] for o in listed) == [f"exports/recovery/{n}.csv" for n in range(TARGETS)]
    staged = [
        o["Key"]
        for n in range(TARGETS)
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"_staging/rec_{n}/").get("Contents", [])
    ]
    assert staged == []
    uploads = [
        u["Key"]
        for prefix in ("exports/recovery/", "_staging/rec_")
        for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
    ]
    assert uploads == []


def _messages_about(messages: list[dict[str, Any]], run_ids: set[str]) -> list[dict[str, Any]]:
    found = []
    for message in messages:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        ids = {payload.get("run_id"), *payload.get("run_ids", [])}
        if metadata.get("event_type") == MARKER_EVENT and ids & run_ids:
            found.append(message)
    return found


def _assert_one_message_naming_the_retry(local_stack, earlier: int, run_id: str, retry: str) -> None:
    about = _messages_about(local_stack.slack.messages()[earlier:], {run_id, retry})
    assert len(about) == 1, [m.get("text") for m in about]
    assert "after 1 retry" in about[0]["text"] and "Delivered" in about[0]["text"], about[0]["text"]


def test_a_daemon_killed_mid_launch_strands_a_run_that_monitoring_fails_and_a_retry_delivers(
    recovery: Recovery, local_stack
) -> None:
    shape, proxy, instance, actions = recovery.shape, recovery.proxy, recovery.instance, recovery.actions
    earlier = len(local_stack.slack.messages())
    # Whatever the daemon sends the code server from now on is held: its next dequeue marks the run
    # STARTING and sends StartRun, which never arrives.
    proxy.pause()
    run_id = actions.launch(NAMES.unpartitioned_job)
    _until(
        "the daemon launching the run",
        lambda: _run(instance, run_id).status == dg.DagsterRunStatus.STARTING,
        shape,
    )
    shape.daemon.kill()  # its StartRun request never reaches the code server
    fault_at = time.time()
    proxy.drop()
    proxy.resume()
    shape.daemon.start()
    print(f"\ndaemon killed mid-launch: {proxy.held} bytes it sent the code server never arrived")

    retry = _until("the stranded run failed, retried, delivered, announced",
                   lambda: _retried_and_announced(instance, run_id), shape)  # fmt: skip
    failed = _run(instance, run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed.tags.get("dagster/failure_reason") == "START_TIMEOUT"
    assert not instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    assert _run(instance, retry).tags.get("dagster/retry_number") == "1"
    _assert_delivered_once(local_stack)
    _assert_one_message_naming_the_retry(local_stack, earlier, run_id, retry)
    assert actions.count == 0, actions.taken
    _report("daemon killed mid-launch (start timeout 30 s)", instance, fault_at, run_id, retry)
    # Compute logs are staged on the worker's disk only while a step runs: each is uploaded and the
    # staged file deleted when its step ends.
    for service in (*shape.code_servers, shape.daemon, shape.webserver):
        staged = [p for p in (service.home / "compute-logs").rglob("*") if p.is_file()]
        assert staged == [], (service.name, staged)


def test_a_run_worker_killed_mid_rename_is_failed_and_a_retry_delivers(
    recovery: Recovery, local_stack
) -> None:
    shape, instance, actions = recovery.shape, recovery.instance, recovery.actions
    earlier = len(local_stack.slack.messages())
    run_id = actions.launch(NAMES.unpartitioned_job)
    rename = NAMES.rename_op("unpartitioned")
    _until("the rename step running", lambda: step_started(instance, run_id, rename), shape)
    pid = run_worker_pid(instance, run_id)
    assert pid is not None
    kill_tree(pid)  # the run's process and its step processes, at once: a pod gone
    fault_at = time.time()

    retry = _until("the run failed, retried, delivered, announced",
                   lambda: _retried_and_announced(instance, run_id), shape)  # fmt: skip
    assert _run(instance, run_id).status == dg.DagsterRunStatus.FAILURE
    assert _run(instance, retry).tags.get("dagster/retry_number") == "1"
    _assert_delivered_once(local_stack)
    _assert_one_message_naming_the_retry(local_stack, earlier, run_id, retry)
    assert actions.count == 0, actions.taken
    _report("run worker killed mid-rename", instance, fault_at, run_id, retry)
