"""The morning on a real distributed executor: dagster-celery on a Redis broker, two workers.

Production shape as in test_production_shape (deploy/dagster.yaml on PostgreSQL, separate code server,
webserver and daemon) plus two `dagster-celery worker start` processes, each in an empty folder of its
own. One worker is SIGKILLed mid-run, as a node that disappears: its tasks are lost with it, the run is
terminated and re-executed from failure, and every output ends complete with nothing mixed.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import psycopg2
import pytest

from unload_assets.orchestration.execution import CELERY_BROKER_ENV
from unload_assets_tests.support.pipeline_helpers import get_bytes, write_catalogue
from unload_assets_tests.support.production import (
    BIN,
    REPO,
    ProductionShape,
    RedisServer,
    Service,
    keep_logs,
    production_env,
)

pytestmark = [
    pytest.mark.production,
    pytest.mark.stack,
    pytest.mark.timeout(1800),
]  # above the sum of the test's own deadlines, which name what is late

BUCKET = "unload-local"
TARGETS = 20
BATCH = 5
STEPS = 2 * TARGETS // BATCH  # an unload and a rename step per batch
PER_STEP = 2
CAP = 1 * PER_STEP  # deploy/dagster.yaml's `redshift` pool (1 unload step at a time) x UNLOADs per step
TARGET = """
  - name: cel_{n:02d}
    description: one of {total} slices of the sales table
    sql: select sale_id, amount from public.sales where mod(sale_id, {total}) = {n} order by sale_id
    key_template: exports/celery/{n:02d}.csv
    format: csv
"""


@pytest.fixture(scope="module")
def celery_shape(local_stack, stack_env, tmp_path_factory) -> Iterator[tuple[ProductionShape, list[Service]]]:
    root = tmp_path_factory.mktemp("celery")
    redis = RedisServer(root / "redis").start()
    catalogue = "targets:" + "".join(TARGET.format(n=n, total=TARGETS) for n in range(TARGETS))
    path = write_catalogue(root, catalogue, name="unload_targets.yaml")
    env = production_env(local_stack, stack_env, database="dagster_celery", catalogue=path)
    env[CELERY_BROKER_ENV] = redis.url
    # Four batches of five targets (8 steps to spread over the workers), two UNLOADs at a time in each
    # unload step, one unload step at a time across workers (the `redshift` pool of deploy/dagster.yaml).
    env["UNLOAD_BATCH_SIZE"], env["UNLOAD_MAX_CONCURRENT"] = str(BATCH), str(PER_STEP)
    shape = ProductionShape(root / "services", env)
    workers = [
        Service(
            f"celery-worker-{n}",
            shape.root,
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(REPO / "deploy" / "celery.yaml"),
                "-n",
                f"worker{n}",
                "--",
                "--concurrency=3",
            ],
            shape.env,
        )  # fmt: skip
        for n in (1, 2)
    ]
    try:
        shape.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            _wait_for(lambda w=worker: "ready." in w.log_file.read_text(errors="replace"), f"{worker.name}")
        yield shape, workers
    finally:
        for worker in workers:
            worker.stop()
        shape.stop()
        redis.stop()
        keep_logs(root / "services", "celery")


def _wait_for(check, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s")


def _tasks_done(worker: Service) -> int:
    """Celery logs one 'succeeded in' line per task (a Dagster step) the worker finished."""
    return worker.log_file.read_text(errors="replace").count("succeeded in")


def _settled(client, run_id: str, quiet: float = 20) -> str | None:
    """The run's status once finished, or None once nothing moved for `quiet` s (tasks lost)."""
    last, since = None, time.monotonic()
    while True:
        status = client.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
        )["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return str(status)
        steps = client.step_statuses(run_id)
        if steps != last:
            last, since = steps, time.monotonic()
        elif time.monotonic() - since > quiet:
            return None
        time.sleep(1)


def test_twenty_targets_on_two_celery_workers_survive_losing_one(celery_shape, local_stack):
    shape, (doomed, survivor) = celery_shape
    client, emulator = shape.client, local_stack.emulator
    emulator.reset_peak()
    # Each UNLOAD holds its slot for a second, so the pool is what stops more of them running at once.
    stall = emulator.faults.inject("stall", seconds=1.0, to_contains="/_staging/cel_", times=3 * TARGETS)
    try:
        run_id = client.launch("unpartitioned_unloads")
        # Mid-run: both workers have finished steps, and steps are still to come.
        _wait_for(lambda: _tasks_done(doomed) >= 1 and _tasks_done(survivor) >= 1, "both workers working")
        done_before = sum(s == "SUCCESS" for s in client.step_statuses(run_id).values())
        assert done_before < STEPS
        doomed.kill()  # SIGKILL the worker and its pool processes: its in-flight tasks are gone
        status = _settled(client, run_id)
        if status is None:  # lost tasks never report back: an operator terminates the run
            client.terminate(run_id)
            status = client.wait_for_run(run_id, timeout=120)
        before = client.step_statuses(run_id)
        if status != "SUCCESS":
            again = client.reexecute(run_id)
            assert client.wait_for_run(again, timeout=600) == "SUCCESS"
            # Only what had not finished ran again: no step that succeeded is repeated.
            succeeded = {step for step, state in before.items() if state == "SUCCESS"}
            assert not set(client.step_statuses(again)) & succeeded
    finally:
        emulator.faults.clear()

    assert stall.fired >= TARGETS
    assert 1 < emulator.peak_concurrent_unloads <= CAP  # in parallel, capped across workers
    assert _tasks_done(survivor) >= 1 and _tasks_done(doomed) >= 1
    s3 = local_stack.s3.client()
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select s.sale_id::text, s.amount::text from public.sales s order by s.sale_id")
        expected = [["" if v is None else v for v in row] for row in cur.fetchall()]  # CSV: NULL is empty
    for n in range(TARGETS):
        text = get_bytes(s3, BUCKET, f"exports/celery/{n:02d}.csv").decode()
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert rows == [r for r in expected if int(r[0]) % TARGETS == n], f"target cel_{n:02d}"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/celery/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [f"exports/celery/{n:02d}.csv" for n in range(TARGETS)]
