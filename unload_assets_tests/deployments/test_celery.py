"""The morning on a real distributed executor: dagster-celery on a Redis broker, two workers.

Production shape as in test_production_shape (deploy/dagster.yaml on PostgreSQL, separate code server,
webserver and daemon) plus two `dagster-celery worker start` processes, each in an empty folder of its
own. The worker running an unload step is SIGKILLed mid-UNLOAD, as a node that disappears: the step's task
was never acknowledged (late acknowledgement, deploy/celery.yaml), so once Redis's visibility timeout has
passed the other worker runs the step again, and the run finishes by itself: every output complete,
nothing mixed, nothing left in staging, one Slack message, and no action by a person (issue 28).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import dagster as dg
import psycopg2
import pytest

from unload_assets.orchestration.execution import CELERY_BROKER_ENV
from unload_assets.resources.slack import MARKER_EVENT
from unload_assets_tests.support.pipeline_helpers import get_bytes, write_catalogue
from unload_assets_tests.support.production import (
    ProductionShape,
    RedisServer,
    Service,
    celery_workers,
    keep_logs,
    production_env,
    wait_until_ready,
)
from unload_assets_tests.support.recovery import ManualActions, celery_executions, celery_unload_in_flight
from unload_assets_tests.support.this_project import ANNOUNCED_TAG, NAMES

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
STALL = 2.0  # seconds each UNLOAD is held: an unload step is mostly UNLOADs in flight
# The test workers' Redis visibility timeout (deploy/celery.yaml's, 1800 s, is for real steps): above the
# longest step here (5 UNLOADs, 2 at a time, STALL s each, plus the step's start), so that no living
# worker's task is handed out twice; a lost worker's task is handed out again after it.
VISIBILITY_TIMEOUT = 60
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
    workers = celery_workers(shape, root, visibility_timeout=VISIBILITY_TIMEOUT)
    try:
        shape.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            wait_until_ready(worker)
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


def test_twenty_targets_on_two_celery_workers_survive_losing_one_mid_unload(celery_shape, local_stack):
    shape, workers = celery_shape
    by_name = {f"worker{n}": w for n, w in zip((1, 2), workers, strict=True)}
    actions = ManualActions(shape.client)
    client, emulator = actions, local_stack.emulator
    instance = shape.instance()
    earlier = len(local_stack.slack.messages())
    emulator.reset_peak()
    # Each UNLOAD holds its slot for STALL s, so the pool is what stops more of them running at once.
    stall = emulator.faults.inject("stall", seconds=STALL, to_contains="/_staging/cel_", times=3 * TARGETS)
    try:
        run_id = client.launch(NAMES.unpartitioned_job)
        # Mid-run and mid-UNLOAD: a worker has finished a step, and an unload step is running elsewhere.
        _wait_for(lambda: sum(_tasks_done(w) for w in workers) >= 1, "a step done")
        doomed_step, doomed_host = _wait_for_value(
            lambda: emulator.unloads_in_flight > 0 and celery_unload_in_flight(instance, run_id),
            "an UNLOAD in flight",
        )
        doomed_name = doomed_host.split("@")[0]
        doomed = by_name[doomed_name]
        survivor = next(w for name, w in by_name.items() if name != doomed_name)
        done_before = sum(s == "SUCCESS" for s in client.step_statuses(run_id).values())
        assert done_before < STEPS
        killed_at = time.monotonic()
        doomed.kill()  # SIGKILL the worker and its pool processes: its task was never acknowledged
        status = client.wait_for_run(run_id, timeout=VISIBILITY_TIMEOUT + 600)
        finished_at = time.monotonic()
        _wait_for(lambda: ANNOUNCED_TAG in (instance.get_run_by_id(run_id).tags), "the run announced")  # type: ignore[union-attr]
        executions = celery_executions(instance, run_id, doomed_step)
    finally:
        emulator.faults.clear()
        instance.dispose()

    print(
        f"\ncelery: worker {doomed_name} SIGKILLed mid-UNLOAD of {doomed_step}; the run finished "
        f"{finished_at - killed_at:.0f} s later (visibility timeout {VISIBILITY_TIMEOUT} s); "
        f"the step ran on {executions}"
    )
    assert status == "SUCCESS"
    assert actions.count == 0, actions.taken  # no terminate, no re-execution
    # The lost step ran again, on the other worker; no step ran twice otherwise.
    assert executions == [doomed_name, survivor.args[survivor.args.index("-n") + 1]], executions
    assert stall.fired >= TARGETS
    assert 1 < emulator.peak_concurrent_unloads <= CAP  # in parallel, capped across workers
    assert _tasks_done(survivor) >= 1
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
    staged = s3.list_objects_v2(Bucket=BUCKET, Prefix="_staging/cel_").get("Contents", [])
    assert staged == []
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix="exports/celery/").get("Uploads", []) == []
    # One Slack message for the run: delivered (the lost step is Celery's matter, not a failed run).
    about = [
        m
        for m in local_stack.slack.messages()[earlier:]
        if ((m.get("metadata") or {}).get("event_type") == MARKER_EVENT)
        and run_id in str((m.get("metadata") or {}).get("event_payload"))
    ]
    assert len(about) == 1 and "Delivered" in about[0]["text"], [m.get("text") for m in about]


def _wait_for_value(check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


@pytest.mark.soak  # a measurement, about two minutes: `make soak` runs it, `make test` does not
def test_a_step_that_outlasts_the_visibility_timeout_runs_twice_and_still_delivers_once(
    celery_shape, local_stack
):
    """What late acknowledgement does to a long UNLOAD (issue 28): Redis hands a task that is still
    unacknowledged after the visibility timeout to a second worker although the first is alive and
    working, so the step runs twice at once. The per-attempt staging and the rename's fenced lock must
    still leave each output single and right; the figures are printed."""
    shape, workers = celery_shape
    actions = ManualActions(shape.client)
    instance = shape.instance()
    emulator = local_stack.emulator
    long_one = "cel_00"
    # One target's UNLOAD outlasts the workers' visibility timeout; the others are quick.
    stall = emulator.faults.inject(
        "stall", seconds=VISIBILITY_TIMEOUT + 20, to_contains=f"/_staging/{long_one}/", times=2
    )
    try:
        started = time.monotonic()
        run_id = actions.launch(NAMES.unpartitioned_job)
        status = actions.wait_for_run(run_id, timeout=4 * VISIBILITY_TIMEOUT + 600)
        wall = time.monotonic() - started
        _wait_for(lambda: ANNOUNCED_TAG in (instance.get_run_by_id(run_id).tags), "the run announced")  # type: ignore[union-attr]
        steps = {
            r.event_log_entry.step_key
            for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
            if "Executing steps" in r.event_log_entry.message
        }
        ran = {step: celery_executions(instance, run_id, step) for step in steps if step}
    finally:
        emulator.faults.clear()
        instance.dispose()
    s3 = local_stack.s3.client()
    staged = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="_staging/cel_").get("Contents", [])]
    twice = {step: workers_ for step, workers_ in ran.items() if len(workers_) > 1}
    print(
        f"\ncelery, a step longer than the visibility timeout ({VISIBILITY_TIMEOUT} s): run {status} in "
        f"{wall:.0f} s; UNLOADs of {long_one} started {stall.fired}; steps run more than once: {twice}; "
        f"left in staging: {len(staged)}"
    )
    assert status == "SUCCESS" and actions.count == 0
    assert stall.fired == 2 and twice, ran  # it did run twice: the hazard the README's limit is about
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select s.sale_id::text, s.amount::text from public.sales s order by s.sale_id")
        expected = [["" if v is None else v for v in row] for row in cur.fetchall()]
    for n in range(TARGETS):
        text = get_bytes(s3, BUCKET, f"exports/celery/{n:02d}.csv").decode()
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert rows == [r for r in expected if int(r[0]) % TARGETS == n], f"target cel_{n:02d}"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/celery/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [f"exports/celery/{n:02d}.csv" for n in range(TARGETS)]
