"""The chaos soak (issue 16): a 14-day backfill through the production shape with everything going wrong.

deploy/dagster.yaml on PostgreSQL, a gRPC code server, a webserver and a daemon as separate processes
(support/production.py). A backfill of 14 daily partitions is launched as the job page launches one (in
runs of DAYS_PER_RUN days: the daily assets' backfill policy, issue 30), and while the daemon works
through it:

- 5% of the Dagster processes' S3 requests fail (seeded, at random: a 500, a reset before S3 saw the
  request, a reset after S3 did the work, a body cut short), through the fault proxy, and one
  CreateMultipartUpload's answer is lost for sure (S3 made the upload; boto3 makes another);
- two UNLOADs lose their connection mid-statement (their data files written, the manifest not);
- Slack is down over several sensor ticks, and when it comes back the answer to one post is lost;
- the daemon is SIGKILLed three times: once while it launches a run (its StartRun request held by a
  proxy in front of the code server and never delivered: the run stays STARTING until run monitoring
  fails it and run retries retry it), once with the backfill's runs queued, once right after the post
  whose answer was lost; each time it is started again;
- a run worker (the run's process and its step processes) is SIGKILLed while its rename step runs: the
  code server fails the run, and run retries re-execute it from asset failure (issue 28).

Nobody terminates, re-executes or edits anything: the test counts such manual actions (`ManualActions`)
and the figure must be 0.

Then every day is delivered complete at its final keys (rows equal to the same query run directly on
PostgreSQL), the backfill is announced in Slack exactly once, in ONE message for all its runs and days
(issue 30; before, a message per day), no staged file and no lock is left, and no multipart upload is
left open. The figures are printed (`pytest -s`) and
written to test-artifacts/chaos_soak.json.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest
from unload_assets_local.s3_fault_proxy import FaultProxy

from unload_assets.notify.backfill_report import run_days
from unload_assets.notify.run_report import read_run
from unload_assets.orchestration.execution import CELERY_BROKER_ENV
from unload_assets.resources.slack import MARKER_EVENT
from unload_assets_tests.support.fault_harness import target_retries
from unload_assets_tests.support.pipeline_helpers import (
    csv_rows,
    decompress,
    get_bytes,
    query_as_text,
    write_catalogue,
)
from unload_assets_tests.support.production import (
    REPO,
    ProductionShape,
    RedisServer,
    Service,
    celery_worker,
    celery_workers,
    keep_logs,
    kill_tree,
    production_env,
    wait_until_ready,
)
from unload_assets_tests.support.recovery import (
    ManualActions,
    PausableProxy,
    celery_executions,
    celery_unload_in_flight,
    run_worker_pid,
    step_started,
)
from unload_assets_tests.support.this_project import ANNOUNCED_TAG, NAMES, REDSHIFT_POOL

pytestmark = [
    pytest.mark.soak,
    pytest.mark.production,
    pytest.mark.stack,
    pytest.mark.timeout(900),
]  # above the sum of the test's own deadlines, which name what is late

BUCKET = "unload-local"
DAYS = 14
# Days per run of the backfill (`backfill_days_per_run`; 30 by default, which would make the 14 days
# one run): 3 keeps several runs for the faults that need them (runs queued behind the pool, a launch).
DAYS_PER_RUN = 3
RUNS = -(-DAYS // DAYS_PER_RUN)
SEED = 16
# (kind, fraction of requests): 5% of all S3 requests of the Dagster processes, drawn per request.
S3_FAULTS = (("error", 0.02), ("reset", 0.01), ("reset_after", 0.01), ("short", 0.01))
DROPPED_UNLOADS = 2
SLACK_FAILED_CALLS = 4  # the outage lasts until this many calls (one per tick with runs waiting) failed
MAX_WAITING = 7  # ...or this many runs wait: below the catch-up threshold (10) by what ends in a tick
# UNLOAD steps at once across the deployment (deploy/dagster.yaml's default is 1, README: a cluster whose WLM
# queue has the slots gets more with `dagster instance concurrency set redshift N`). Three let the 14
# runs overlap on two cores instead of queueing one behind the other.
REDSHIFT_POOL_LIMIT = 3
RUN_SENSORS = (NAMES.success_sensor, NAMES.failure_sensor)
LAUNCHING = (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING)
DEADLINE = 540  # seconds for the whole backfill to be delivered and announced
# The soak instance's run monitoring (deploy/dagster.yaml's 300 s start timeout is for real launches):
# a run stranded by the daemon's death mid-launch is failed after 30 s, checked every 5 s.
INSTANCE = {"run_monitoring": {"start_timeout_seconds": 30, "poll_interval_seconds": 5}}
RENAME_STEP = "rename_" + NAMES.instance


@dataclass(frozen=True)
class Output:
    """A target of the soak's catalogue: its day's SELECT (`{day}` is `{{ partition_date }}` in the
    catalogue, a DATE literal in the direct query it is compared with) and how a reader reads it."""

    target: str
    sql: str
    key_template: str
    options: str  # the catalogue entry's other fields
    header: bool
    compression: str

    def key(self, day: date) -> str:
        return self.key_template.format(date=day, yyyy=f"{day:%Y}", mm=f"{day:%m}", dd=f"{day:%d}")

    def entry(self) -> str:
        sql = self.sql.format(day="{{ partition_date }}")
        return (
            f'  - name: {self.target}\n    description: chaos soak target\n    sql: "{sql}"\n'
            f"    key_template: {self.key_template}\n"
            + "".join(f"    {o}\n" for o in self.options.split("; "))
        )


OUTPUTS = (
    # Several files a day (PARALLEL ON), combined into one gzipped CSV with the header on top.
    Output(
        "soak_sales",
        "select sale_id, sale_date, sold_at, customer_id, product, quantity, amount, note"
        " from public.sales where sale_date = {day} order by sale_id",
        "exports/soak/sales/{date}/sales_{date}.csv.gz",
        "format: csv; compression: gzip; header: true; parallel: true",
        header=True,
        compression="gzip",
    ),
    # Several files a day, delivered as numbered zstd parts and a COPY manifest.
    Output(
        "soak_parts",
        "select sale_id, product, amount from public.sales where sale_date = {day} order by sale_id",
        "exports/soak/parts/{yyyy}/{mm}/{dd}/sales.csv.zst",
        "format: csv; compression: zstd; parallel: true; on_split: parts",
        header=False,
        compression="zstd",
    ),
    # One small file a day.
    Output(
        "soak_totals",
        "select product, count(*) as sales, sum(amount) as amount from public.sales"
        " where sale_date = {day} group by product order by product",
        "exports/soak/totals/totals_{date}.csv",
        "format: csv; header: true",
        header=True,
        compression="none",
    ),
)


def backfill_days() -> list[date]:
    """14 days inside the seeded window (the 30 UTC days before today) and inside the partitions (which
    end yesterday in the schedules' zone, up to a day either side of UTC)."""
    today = datetime.now(timezone.utc).date()
    return [today - timedelta(days=DAYS + 2 - n) for n in range(DAYS)]


@dataclass
class Soak:
    shape: ProductionShape
    proxy: FaultProxy
    instance: dg.DagsterInstance
    started: float  # time.monotonic() when the test's fixture began
    daemon_link: PausableProxy  # between the daemon and the code server
    actions: ManualActions  # the webserver client, every operator action counted
    executor: str  # "multiprocess" (steps forked in the run's worker) or "celery" (two Celery workers)
    workers: list[Service]  # the Celery workers (none for multiprocess)


# The soak runs twice: on the default executor, and on Celery (where a worker is lost mid-UNLOAD too).
EXECUTORS = ("multiprocess", "celery")
CELERY_VISIBILITY_TIMEOUT = 60  # the soak workers' (deploy/celery.yaml: 1800 s): above any soak step


@pytest.fixture(scope="module", params=EXECUTORS)
def soak(request, local_stack, stack_env, tmp_path_factory) -> Iterator[Soak]:
    executor = request.param
    started = time.monotonic()
    root = tmp_path_factory.mktemp(f"soak-{executor}")
    start = datetime.now(timezone.utc).date() - timedelta(days=30)
    body = f'defaults:\n  partitioning: {{type: daily, start_date: "{start}"}}\ntargets:\n'
    catalogue = write_catalogue(root, body + "".join(o.entry() for o in OUTPUTS), name="unload_targets.yaml")
    env = production_env(local_stack, stack_env, database=f"dagster_soak_{executor}", catalogue=catalogue)
    env["UNLOAD_BACKFILL_DAYS_PER_RUN"] = str(DAYS_PER_RUN)
    redis = RedisServer(root / "redis").start() if executor == "celery" else None
    if redis is not None:
        env[CELERY_BROKER_ENV] = redis.url
    proxy = FaultProxy(local_stack.s3.endpoint_url).start()
    env["AWS_ENDPOINT_URL_S3"] = proxy.endpoint_url  # every S3 call of every Dagster process
    daemon_link = PausableProxy()
    shape = ProductionShape(
        root / "services", env, instance=INSTANCE, daemon_code_server_port=daemon_link.port
    )
    daemon_link.start(shape.grpc_port)
    workers = (
        celery_workers(shape, root, visibility_timeout=CELERY_VISIBILITY_TIMEOUT)
        if executor == "celery"
        else []
    )
    instance = None
    try:
        shape.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            wait_until_ready(worker)
        instance = shape.instance()
        instance.event_log_storage.set_concurrency_slots(REDSHIFT_POOL, REDSHIFT_POOL_LIMIT)
        yield Soak(
            shape, proxy, instance, started, daemon_link, ManualActions(shape.client), executor, workers
        )
    finally:
        if instance is not None:
            instance.dispose()
        for worker in workers:
            worker.stop()
        shape.stop()
        proxy.stop()
        daemon_link.stop()
        if redis is not None:
            redis.stop()
        local_stack.slack.fail_next(0)
        local_stack.slack.lose_answers(0)
        local_stack.emulator.faults.clear()
        keep_logs(root / "services", f"soak-{executor}")


def _until(what: str, check: Callable[[], Any], deadline: float, shape: ProductionShape) -> Any:
    """Poll `check` until it holds (returns its value); past `deadline` (monotonic) fail naming `what`
    is late."""
    while not (value := check()):
        assert time.monotonic() < deadline, (
            f"not within the soak's {DEADLINE} s: {what}\n{shape.daemon.tail()}"
        )
        time.sleep(0.25)
    return value


def _restart_daemon(shape: ProductionShape, instance: dg.DagsterInstance, deadline: float) -> None:
    """SIGKILL the daemon (its whole process group: no tick, write or heartbeat finishes) and start it again,
    at a moment when no run is being launched (the kill mid-launch is `_kill_daemon_mid_launch`)."""
    _until("a moment with no run being launched", lambda: not _launching(instance), deadline, shape)
    shape.daemon.kill()
    shape.daemon.start()


def _kill_daemon_mid_launch(soak: Soak, deadline: float) -> str:
    """SIGKILL the daemon while it launches a run: what it sends the code server is held from now on,
    and dropped once it is dead, so the run it was launching stays STARTING. Returns that run's id."""
    # A run already STARTING may have had its StartRun delivered (it stays STARTING until its worker
    # begins): the one to watch becomes STARTING after the pause.
    before = {r.run_id for r in _runs(soak.instance) if r.status != dg.DagsterRunStatus.QUEUED}
    soak.daemon_link.pause()

    def newly_starting() -> str | None:
        runs = _runs(soak.instance)
        return next(
            (r.run_id for r in runs if r.status == dg.DagsterRunStatus.STARTING and r.run_id not in before),
            None,
        )

    starting = _until("a run being launched", newly_starting, deadline, soak.shape)
    soak.shape.daemon.kill()
    soak.daemon_link.drop()
    soak.daemon_link.resume()
    soak.shape.daemon.start()
    return starting


def _kill_run_worker_mid_rename(soak: Soak, deadline: float) -> str:
    """SIGKILL a run's worker (its process and its step processes) while its rename step runs: the next
    S3 request of a rename to the exports is answered 10 s late (a rule ahead of the random ones), and
    the worker of a run renaming is killed meanwhile. Returns the run's id."""
    instance = soak.instance
    slow = soak.proxy.inject_first("slow", path_contains="/exports/soak/", times=1, delay=10.0)
    _until("a rename's S3 request held", lambda: slow.fired >= 1, deadline, soak.shape)

    def renaming() -> tuple[str, int] | None:
        for run in _runs(instance):
            if run.status == dg.DagsterRunStatus.STARTED and step_started(instance, run.run_id, RENAME_STEP):
                pid = run_worker_pid(instance, run.run_id)
                if pid is not None:
                    return run.run_id, pid
        return None

    run_id, pid = _until("a run renaming", renaming, deadline, soak.shape)
    kill_tree(pid)
    return run_id


def _kill_celery_worker_mid_unload(soak: Soak, emulator: Any, deadline: float) -> tuple[str, str]:
    """SIGKILL the Celery worker running an unload step while an UNLOAD is in flight (a node lost), and
    start a new worker of the same name in a folder of its own (what an autoscaler does). Returns the
    run and the step it lost."""
    instance = soak.instance

    def unloading() -> tuple[str, str, str] | None:
        if emulator.unloads_in_flight == 0:
            return None
        for run in _runs(instance):
            if run.status == dg.DagsterRunStatus.STARTED and (
                found := celery_unload_in_flight(instance, run.run_id)
            ):
                return run.run_id, *found
        return None

    run_id, step, host = _until("an UNLOAD in flight on a Celery worker", unloading, deadline, soak.shape)
    name = host.split("@")[0]
    [doomed] = [w for w in soak.workers if f" {name} " in f" {' '.join(w.args)} "]
    doomed.kill()
    replacement = celery_worker(soak.shape, Path(doomed.args[doomed.args.index("-y") + 1]), name, suffix="-2")
    soak.workers[soak.workers.index(doomed)] = replacement.start()
    return run_id, step


def _launching(instance: dg.DagsterInstance) -> bool:
    return any(run.status in LAUNCHING for run in _runs(instance))


def _runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [record.dagster_run for record in instance.get_run_records()]


def _waiting(instance: dg.DagsterInstance) -> int:
    """Successful runs not yet announced."""
    return sum(
        run.status == dg.DagsterRunStatus.SUCCESS and ANNOUNCED_TAG not in run.tags for run in _runs(instance)
    )


def _done(instance: dg.DagsterInstance, days: list[date]) -> bool:
    """Every day has a successful run, nothing is still running or queued, every finished run is
    announced (with its backfill)."""
    runs = _runs(instance)
    if any(not run.is_finished for run in runs):
        return False
    succeeded = {day for run in runs if run.status == dg.DagsterRunStatus.SUCCESS for day in run_days(run)}
    return succeeded >= {d.isoformat() for d in days} and all(ANNOUNCED_TAG in run.tags for run in runs)


def _ticks_since(instance: dg.DagsterInstance, when: float) -> int:
    """The fewest ticks either run sensor (success, failure) has completed since `when` (a unix time)."""
    states = [s for s in instance.all_instigator_state() if s.name in RUN_SENSORS]
    assert len(states) == len(RUN_SENSORS), states
    return min(len(instance.get_ticks(s.instigator_origin_id, s.selector_id, after=when)) for s in states)


def _read(s3: Any, output: Output, day: date) -> tuple[list[str] | None, list[list[str]], list[str]]:
    """What a reader gets at the day's final key(s): the one object, or the parts its manifest lists;
    and any other object under the day's name (a part no manifest lists, a stray copy)."""
    key = output.key(day)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=key.split(".")[0])
    found = {o["Key"] for page in pages for o in page.get("Contents", [])}
    if key + ".manifest" in found:
        entries = json.loads(get_bytes(s3, BUCKET, key + ".manifest"))["entries"]
        keys = [entry["url"].split("/", 3)[3] for entry in entries]
        found.discard(key + ".manifest")
    else:
        keys = [key]
    text = b"".join(decompress(get_bytes(s3, BUCKET, k), output.compression) for k in keys).decode()
    return (*csv_rows(text, header=output.header), sorted(found - set(keys)))


def _header(dsn: str, sql: str) -> list[str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"select * from ({sql}) q limit 0")
        return [d.name for d in cur.description]


def _announcements(messages: list[dict[str, Any]]) -> list[list[str]]:
    """The run ids each of our messages carries in its Slack metadata (a catch-up message: several)."""
    found = []
    for message in messages:
        metadata = message.get("metadata") or {}
        if metadata.get("event_type") == MARKER_EVENT:
            payload = metadata.get("event_payload") or {}
            found.append([payload["run_id"], *payload.get("run_ids", [])])
    return found


def _verify_outputs(s3: Any, dsn: str, days: list[date]) -> tuple[int, int, list[str]]:
    """Every target's output of every day against the day's query run directly on PostgreSQL: the
    outputs complete and right, their rows, and what is wrong with the others."""
    verified, rows, wrong = 0, 0, []
    for day in days:
        for output in OUTPUTS:
            direct = output.sql.format(day=f"date '{day}'")
            header, got, strays = _read(s3, output, day)
            expected = query_as_text(dsn, direct)
            if (
                sorted(got) != sorted(expected)
                or (output.header and header != _header(dsn, direct))
                or strays
            ):
                wrong.append(f"{output.target} {day}: {len(got)} rows, the query {len(expected)}; {strays}")
            else:
                verified, rows = verified + 1, rows + len(got)
    return verified, rows, wrong


def _left_over(s3: Any) -> dict[str, list[str]]:
    """What any attempt of any run may have left: staged files, rename locks, open multipart uploads."""

    def keys(prefix: str) -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]

    uploads = [
        u["Key"]
        for prefix in ("exports/soak/", "_staging/soak_")
        for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
    ]
    return {
        "staged_objects": keys("_staging/soak_"),
        "locks": keys("_staging/_locks/exports/soak/"),
        "open_multipart_uploads": uploads,
    }


def test_a_14_day_backfill_under_chaos_is_delivered_and_announced_exactly_once(
    soak: Soak, local_stack
) -> None:
    shape, proxy, instance, slack = soak.shape, soak.proxy, soak.instance, local_stack.slack
    s3, dsn, days = local_stack.s3.client(), local_stack.postgres.dsn(), backfill_days()
    earlier_messages = len(slack.messages())  # the session's stand-in is shared with other modules
    # ...and its counts with the other soak (one per executor) and other modules
    failed_before, lost_before = slack.failed_calls, slack.lost_answers
    faults = [proxy.inject(kind, fraction=share, seed=SEED + n) for n, (kind, share) in enumerate(S3_FAULTS)]
    # And once for sure, whatever the draws: S3 creates a multipart upload and its answer is lost.
    proxy.inject("reset_after", operation="CreateMultipartUpload", times=1)
    # The connections of two UNLOADs of two different days drop after their data files are written.
    drops = [
        local_stack.emulator.faults.inject("drop", to_contains=f"/{target}/{day}/")
        for target, day in (("soak_sales", days[3]), ("soak_parts", days[9]))
    ]
    started = time.monotonic()
    deadline = started + DEADLINE
    timeline: dict[str, float] = {}

    def mark(moment: str) -> None:
        timeline[moment] = round(time.monotonic() - started, 1)

    actions = soak.actions
    backfill = actions.launch_backfill("daily_unloads", [d.isoformat() for d in days])
    # The first SIGKILL, mid-launch: the backfill's runs submitted, the daemon launching one of them.
    _until("the backfill's runs", lambda: len(_runs(instance)) >= RUNS, deadline, shape)
    stranded = _kill_daemon_mid_launch(soak, deadline)
    mark("SIGKILL mid-launch")
    # A run worker SIGKILLed mid-rename. (Not on Celery: there the run worker only orchestrates, the
    # rename goes on in its Celery worker and delivers, and Dagster then has nothing to retry.)
    orphaned = _kill_run_worker_mid_rename(soak, deadline) if soak.executor == "multiprocess" else None
    if orphaned:
        mark("run worker SIGKILL mid-rename")
    lost: tuple[str, str] | None = None
    if soak.executor == "celery":
        # A Celery worker SIGKILLed mid-UNLOAD: another one runs its step after the visibility timeout.
        long_unload = local_stack.emulator.faults.inject(
            "stall", seconds=5.0, to_contains="/_staging/soak_", times=1
        )
        lost = _kill_celery_worker_mid_unload(soak, local_stack.emulator, deadline)
        mark("Celery worker SIGKILL mid-UNLOAD")
    # The next SIGKILL, with runs queued behind the `redshift` pool.
    # Slack goes down at the same moment and stays down over several ticks of the restarted daemon.
    slack.fail_next(1_000_000)
    _restart_daemon(shape, instance, deadline)
    mark("second SIGKILL, Slack down")
    _until(
        f"{SLACK_FAILED_CALLS} Slack calls failed with runs waiting",
        lambda: slack.failed_calls - failed_before >= SLACK_FAILED_CALLS or _waiting(instance) >= MAX_WAITING,
        deadline,
        shape,
    )
    # Slack comes back, and the answer to its first post is lost: the message is in the channel, the
    # sensor does not know. The second SIGKILL comes right then, before any tick can look it up.
    slack.lose_answers(1, method="chat.postMessage")
    slack.fail_next(0)
    mark("Slack back")
    _until("a post whose answer is lost", lambda: slack.lost_answers - lost_before >= 1, deadline, shape)
    _restart_daemon(shape, instance, deadline)
    mark("third SIGKILL")
    try:
        _until("every day delivered and every run announced", lambda: _done(instance, days), deadline, shape)
    finally:
        _dump_runs(instance)
    mark("all delivered and announced")
    # Two more ticks of each Slack sensor, for any message posted twice to show up.
    done_at = time.time()
    _until("two more sensor ticks", lambda: _ticks_since(instance, done_at) >= 2, deadline + 60, shape)
    proxy.clear()  # the checks below read S3 directly; nothing more goes through the proxy

    verified, rows, wrong = _verify_outputs(s3, dsn, days)
    left = _left_over(s3)
    runs = _runs(instance)
    succeeded = {run.run_id for run in runs if run.status == dg.DagsterRunStatus.SUCCESS}
    delivered_days = sorted({day for run in runs if run.run_id in succeeded for day in run_days(run)})
    messages = slack.messages()[earlier_messages:]
    announced = Counter(run_id for ids in _announcements(messages) for run_id in ids)
    ts = {m["ts"] for m in messages}
    success_messages = [m for m in messages if m["text"].startswith(":white_check_mark: Backfill delivered")]
    figures = {
        "executor": soak.executor,
        "days": DAYS,
        "targets": len(OUTPUTS),
        "faults": {
            "s3_requests": faults[0].matched,  # the first rule sees every request
            "s3_injected": sum(proxy.injected.values()),
            "s3_by_kind": dict(sorted(Counter(k.split()[0] for k in proxy.injected.elements()).items())),
            "s3_by_operation": dict(sorted(proxy.injected.items())),
            "redshift_connections_dropped": sum(d.fired for d in drops),
            "slack_calls_failed": slack.failed_calls - failed_before,
            "slack_answers_lost": slack.lost_answers - lost_before,
            "daemon_sigkills": 3,
            "daemon_sigkills_mid_launch": 1,
            "run_worker_sigkills_mid_rename": 1 if orphaned else 0,
            "celery_worker_sigkills_mid_unload": 1 if lost else 0,
        },
        "runs": {
            "launched": len(runs),
            "by_status": dict(Counter(run.status.value for run in runs)),
            "run_retries": sum(1 for run in runs if run.tags.get("dagster/retry_number")),
            "step_retries": sum(_step_retries(instance, run.run_id) for run in runs),
            "target_retries": dict(
                Counter(r.what.split(" of ")[0] for run in runs for r in target_retries(instance, run.run_id))
            ),
            "backfill": backfill,
            "stranded_mid_launch": _outcome(instance, stranded),
            "orphaned_mid_rename": _outcome(instance, orphaned) if orphaned else None,
            "lost_step_ran_on": celery_executions(instance, *lost) if lost else None,
        },
        "manual_actions": actions.count,
        "outputs_verified": f"{verified} of {DAYS * len(OUTPUTS)}",
        "rows_verified": rows,
        "data_lost": len(wrong),
        "slack": {
            "messages": len(messages),
            "success_messages": len(success_messages),
            "lost": sum(1 for run in runs if run.tags.get(ANNOUNCED_TAG) not in ts),
            "doubled": sum(1 for n in announced.values() if n > 1),
        },
        "left_over": {name: len(found) for name, found in left.items()},
        "timeline_seconds": timeline,
        "wall_seconds": {
            "soak": timeline["all delivered and announced"],
            "with_startup": round(time.monotonic() - soak.started, 1),
        },
    }
    _report(figures)

    assert [d.fired for d in drops] == [1] * DROPPED_UNLOADS
    assert slack.failed_calls - failed_before >= 1 and slack.lost_answers - lost_before == 1
    assert not wrong and verified == DAYS * len(OUTPUTS), wrong  # 14 of 14 days, complete
    # ONE message for the whole backfill: every day delivered (the runs that failed were retried by
    # Dagster and their retries delivered), every run of it announced by that message, none doubled.
    assert delivered_days == [d.isoformat() for d in days]
    assert len(success_messages) == len(messages) == 1, [m["text"] for m in messages]
    assert announced == Counter({f"backfill/{backfill}": 1}), announced
    assert all(run.tags.get(ANNOUNCED_TAG) == messages[0]["ts"] for run in runs), [r.tags for r in runs]
    assert left == {"staged_objects": [], "locks": [], "open_multipart_uploads": []}, left
    # The run stranded mid-launch and the one whose worker died were failed and retried by Dagster, each
    # retry delivering its day; and nobody did anything.
    for run_id in (stranded, orphaned):
        if run_id:
            assert _outcome(instance, run_id) == "FAILURE, retried: SUCCESS", (
                run_id,
                _outcome(instance, run_id),
            )
    assert instance.get_run_by_id(stranded).tags.get("dagster/failure_reason") == "START_TIMEOUT"  # type: ignore[union-attr]
    assert actions.count == 0, actions.taken
    if lost:
        # The lost step ran again on another worker (a new one of the same name counts as another).
        assert len(figures["runs"]["lost_step_ran_on"]) == 2, figures["runs"]["lost_step_ran_on"]
        assert long_unload.fired == 1


def _outcome(instance: dg.DagsterInstance, run_id: str) -> str:
    """`<status>`, and what its retries came to: "FAILURE, retried: SUCCESS"."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    said = run.status.value
    while run is not None and (retry := run.tags.get("dagster/auto_retry_run_id")):
        run = instance.get_run_by_id(retry)
        said += f", retried: {run.status.value if run else '?'}"
    return said


def _step_retries(instance: dg.DagsterInstance, run_id: str) -> int:
    """Steps Dagster retried whole (a step process that died)."""
    return len(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records)


def _report(figures: dict[str, Any]) -> None:
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    name = (
        "chaos_soak.json"
        if figures["executor"] == "multiprocess"
        else f"chaos_soak_{figures['executor']}.json"
    )
    (artifacts / name).write_text(json.dumps(figures, indent=2) + "\n")
    faults, runs, slack = figures["faults"], figures["runs"], figures["slack"]
    kinds = ", ".join(f"{k} {v}" for k, v in faults["s3_by_kind"].items())
    timeline = ", ".join(f"{what} {at} s" for what, at in figures["timeline_seconds"].items())
    lines = [
        "",
        f"chaos soak ({figures['executor']}): {figures['days']}-day backfill of {figures['targets']} targets",
        f"  S3 faults injected     {faults['s3_injected']} of {faults['s3_requests']} requests ({kinds})",
        f"  Redshift drops         {faults['redshift_connections_dropped']} connections dropped mid-UNLOAD",
        f"  Slack outage           {faults['slack_calls_failed']} calls failed, "
        f"{faults['slack_answers_lost']} answer lost",
        f"  daemon SIGKILLs        {faults['daemon_sigkills']} "
        f"({faults['daemon_sigkills_mid_launch']} mid-launch: {runs['stranded_mid_launch']})",
        f"  run worker SIGKILLs    {faults['run_worker_sigkills_mid_rename']} mid-rename: "
        f"{runs['orphaned_mid_rename']}",
        f"  Celery worker SIGKILLs {faults['celery_worker_sigkills_mid_unload']} mid-UNLOAD"
        + (f": the step ran on {runs['lost_step_ran_on']}" if runs["lost_step_ran_on"] else ""),
        f"  runs launched          {runs['launched']} {runs['by_status']}",
        f"  retries                run {runs['run_retries']}, step {runs['step_retries']}, "
        f"target {runs['target_retries']}",
        f"  outputs verified       {figures['outputs_verified']} ({figures['rows_verified']} rows)",
        f"  data lost              {figures['data_lost']}",
        f"  Slack messages         {slack['messages']} ({slack['success_messages']} backfill delivered); "
        f"lost {slack['lost']}, doubled {slack['doubled']}",
        f"  left over              {figures['left_over']}",
        f"  manual actions         {figures['manual_actions']}",
        f"  timeline               {timeline}",
        f"  wall time              {figures['wall_seconds']['soak']} s soak, "
        f"{figures['wall_seconds']['with_startup']} s with start-up",
    ]
    print("\n".join(lines))


def _dump_runs(instance: dg.DagsterInstance) -> None:
    """Every run's state, what the sensors would read of it, and the sensors' cursors: for a failure."""
    rows = []
    for record in instance.get_run_records():
        run = record.dagster_run
        reading = read_run(instance, run.run_id, NAMES.target_of)
        rows.append(
            {
                "run_id": run.run_id,
                "status": run.status.value,
                "days": run_days(run),
                "tags": {k: v for k, v in run.tags.items() if not k.startswith("dagster/kind")},
                "start": record.start_time,
                "end": record.end_time,
                "update": record.update_timestamp.isoformat(),
                "planned": len(reading.planned),
                "deliveries": len(reading.deliveries),
                "failures": {k: v.error for k, v in reading.failures.items()},
            }
        )
    cursors = {
        state.name: getattr(state.instigator_data, "cursor", None)
        for state in instance.all_instigator_state()
    }
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "chaos_soak_runs.json").write_text(json.dumps({"runs": rows, "cursors": cursors}, indent=2))
