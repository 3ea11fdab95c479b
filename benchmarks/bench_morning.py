"""A daily morning of N targets: what Dagster orchestration costs per target, beside the ops' own work.

Run by hand:  .venv/bin/python benchmarks/bench_morning.py [--sizes 10,100,1000] [--one-of 1,100]
                                                          [--cli-size 100] [--celery 20] [--rows 20000]
                                                          [--postgres 100,1000]

Against the local stack (`unload-assets-local up`: PostgreSQL, the Redshift emulator, the moto S3 server,
in processes of their own), for each N a catalogue of N daily targets t0001..tNNNN (csv, one trivial
`mod(sale_id, N) = i` filter each) and a fresh DAGSTER_HOME (empty dagster.yaml: SQLite storage), run
with the code location's executor (unload_assets/orchestration/execution.py: one process per step,
forked from a forkserver that built the code location once per run):
- morning:  yesterday's partition (America/Los_Angeles unless UNLOAD_TIMEZONE says otherwise) of the
            job `daily_unloads` launched as the schedule launches it, through
            `dagster job execute -j daily_unloads --tags '{"dagster/partition": ...}'`;
- cli:      the same day through `dagster asset materialize --select group:unloads` (--cli-size M);
- one-of-K: ONE target, `--select s3/t0001`, in a catalogue of K (--one-of): how one target's cost
            grows with the catalogue it is loaded with;
- floor-one-of-K: the same click on Dagster's floor for K targets (bench_load.py's FLOOR: one
            subsettable graph-backed multi-asset of K outputs with four check specs each, daily
            partitions, two ops that do nothing, the default executor), with the same CLI: what Dagster
            itself costs for one target of that shape (wall and CPU only: it materialises nothing);
- celery-N: the morning of N targets with UNLOAD_CELERY_BROKER_URL set: its steps run on two
            `dagster-celery` workers (concurrency 2 each) over a loopback `redis-server` (--celery);
- postgres-N: the morning of N targets on the production shape (--postgres): deploy/dagster.yaml on a
            PostgreSQL cluster of its own (not the stack's, so its CPU counts as Dagster's), a gRPC code
            server, the daemon and a webserver; the run launched as the UI launches it (queued, then
            dequeued by the daemon and started by the code server, as a scheduled run is). Wall is the
            run's own, from its creation to its end.
Printed per run: wall time; CPU: what the whole machine spent busy meanwhile (/proc/stat; the stack's
servers included, so run it on a quiet machine: the CLI's children's rusage would miss step processes
forked by a forkserver or run by Celery workers); stack CPU: what the stack's servers (PostgreSQL, the
Redshift emulator, moto S3) spent meanwhile, from /proc of every process of the stack's session, the
reaped children included: the work Redshift and S3 do for the morning; the ops' recorded work (the sum
of `unload_seconds` + `rename_seconds` in the run's materialisations, asserted to number the targets
run: wall time, and with several targets' UNLOADs in flight at once it overlaps); per-target wall and
CPU; Dagster CPU per target ((CPU - stack CPU) / targets: everything on the Dagster side: loading the
code location, planning, step processes, event writes, the delivery checks and the op code itself,
boto3 and psycopg2 included); peak RSS (the largest single process the CLI waited for, not a sum;
0 for postgres-N); events per target (every event log entry the run wrote, over the targets it ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from bench_load import FLOOR
from stack_process import start_stack, stop_stack
from unload_assets_local.postgres import RELOCATED_BASE, free_port

from unload_assets.configuration import DEFAULT_TIMEZONE
from unload_assets.names import Names
from unload_assets.orchestration.schedules import previous_day

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
MODULE = "unload_assets.definitions"
DAILY_JOB = Names("unloads").daily_job()  # this repository's instance (defs/unload_targets/defs.yaml)


@dataclass(frozen=True)
class Measure:
    label: str
    targets: int  # targets materialised by the run (not the catalogue size)
    wall: float
    cpu: float
    stack_cpu: float
    ops: float
    rss_mb: float
    events: int = 0  # event log entries the run wrote


def write_catalogue(path: Path, size: int) -> Path:
    width = max(4, len(str(size)))
    lines = ["targets:"]
    for i in range(size):
        sql = (
            "select sale_id, amount from public.sales"
            f" where sale_date = {{{{ partition_date }}}} and mod(sale_id, {size}) = {i}"
        )
        lines += [
            f"  - name: t{i + 1:0{width}d}",
            f"    description: bench target {i + 1} of {size}",
            f"    sql: {json.dumps(sql)}",
            '    key_template: "exports/bench/{target}/{date}.csv"',
            "    format: csv",
            '    partitioning: {type: daily, start_date: "2026-01-01"}',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def fresh_home(workdir: Path, label: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"home-{label}-", dir=workdir))
    (home / "dagster.yaml").write_text("")
    return home


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def session_cpu(sids: set[int]) -> float:
    """CPU seconds of every live process in the sessions `sids`, with the children each has reaped."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) in sids:  # fields after "(comm)": state ppid pgrp session ... utime(11) ..
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / tick


PG_TRUST = False  # --pg-trust
STACK_SESSIONS: set[int] = set()  # set in main(): the stack's session, and PostgreSQL's own


def stack_sessions(proc: subprocess.Popen[bytes], workdir: Path) -> set[int]:
    """The stack's session, and the session of its PostgreSQL (whose postmaster starts one of its own):
    found through postmaster.pid in the cluster's data folder, wherever the stack put it."""
    sessions = {os.getsid(proc.pid)}
    for found in [*workdir.rglob("postmaster.pid"), *RELOCATED_BASE.glob("*/*/postmaster.pid")]:
        try:
            pid = int(found.read_text().split()[0])
            if str(workdir) in Path(f"/proc/{pid}/cmdline").read_text() or found.is_relative_to(workdir):
                sessions.add(os.getsid(pid))
        except (OSError, ValueError, IndexError):
            continue
    return sessions


def run_dagster(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float, float]:
    """Wall s, CPU s of the machine meanwhile, peak RSS MB of the CLI's largest process; raises if it
    failed. The machine's CPU, not getrusage: step processes forked by a forkserver, or run by Celery
    workers, are not waited by the CLI, so its children's rusage misses them."""
    busy0, stack0 = machine_busy(), session_cpu(STACK_SESSIONS)
    wall0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "dagster"), *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        # wait4 returns this child's own rusage (its reaped step processes included): RUSAGE_CHILDREN's
        # ru_maxrss is a maximum over every child ever waited, so it cannot give one run's peak.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - wall0
    cpu, stack_cpu = machine_busy() - busy0, session_cpu(STACK_SESSIONS) - stack0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"`dagster {' '.join(args)}` exited {proc.returncode}:\n{tail}")
    return wall, cpu, stack_cpu, usage.ru_maxrss / 1024  # KiB on Linux


def ops_work(home: Path, expected: int) -> tuple[float, int]:
    """The run's unload_seconds + rename_seconds and the events it wrote; fails unless it materialised
    `expected` targets."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1, f"expected one run in {home}, found {len(runs)}"
        return run_work(instance, runs[0].run_id, expected)


def run_work(instance: dg.DagsterInstance, run_id: str, expected: int) -> tuple[float, int]:
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, (
        f"run {run_id} ended {run and run.status}"
    )
    records: list[dg.EventLogRecord] = []
    cursor, events = None, 0
    while True:
        conn = instance.get_records_for_run(run_id, cursor=cursor, limit=5000)
        events += len(conn.records)
        records += [
            r
            for r in conn.records
            if r.event_log_entry.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        ]
        if not conn.has_more:
            break
        cursor = conn.cursor
    assert len(records) == expected, f"run {run_id}: {len(records)} materialisations, expected {expected}"
    total = 0.0
    for record in records:
        materialization = record.asset_materialization
        assert materialization is not None
        meta = materialization.metadata
        total += float(meta["unload_seconds"].value) + float(meta["rename_seconds"].value)  # type: ignore[arg-type]
    return total, events


def measure(
    label: str, workdir: Path, stack_env: dict[str, str], size: int, targets: int, args: list[str]
) -> Measure:
    catalogue = write_catalogue(workdir / f"catalogue-{label}.yaml", size)
    home = fresh_home(workdir, label)
    env = {**os.environ, **stack_env, "UNLOAD_TARGETS_FILE": str(catalogue), "DAGSTER_HOME": str(home)}
    wall, cpu, stack_cpu, rss = run_dagster(args, env, workdir / f"{label}.log")
    ops, events = ops_work(home, targets)
    return Measure(label, targets, wall, cpu, stack_cpu, ops, rss, events)


def floor_measure(label: str, workdir: Path, size: int, day: str) -> Measure:
    """One target of Dagster's floor for `size` targets, materialised with the same CLI (no stack needed)."""
    module = workdir / "floor_defs.py"
    module.write_text(FLOOR)
    home = fresh_home(workdir, label)
    env = {**os.environ, "FLOOR_TARGETS": str(size), "DAGSTER_HOME": str(home)}
    args = ["asset", "materialize", "-f", str(module), "--select", "s3/t0", "--partition", day]
    wall, cpu, stack_cpu, rss = run_dagster(args, env, workdir / f"{label}.log")
    return Measure(label, 1, wall, cpu, stack_cpu, 0.0, rss)


def celery_measure(
    label: str, workdir: Path, stack_env: dict[str, str], size: int, args: list[str], workers: int
) -> Measure:
    """The same morning with its steps on `workers` dagster-celery workers (concurrency 2 each) and a
    loopback Redis, started (and warm) before the run is timed."""
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    catalogue = write_catalogue(workdir / f"catalogue-{label}.yaml", size)
    home = fresh_home(workdir, label)
    env = {
        **os.environ,
        **stack_env,
        "UNLOAD_TARGETS_FILE": str(catalogue),
        "DAGSTER_HOME": str(home),
        "UNLOAD_CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with dg.DagsterInstance.from_config(str(home)):
        pass  # create the SQLite storage once: two workers creating it at the same time collide
    procs, logs = [], []
    for n in range(workers):
        logs.append(workdir / f"{label}-worker{n}.log")
        with logs[-1].open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "dagster-celery"),
                        "worker",
                        "start",
                        "-A",
                        "dagster_celery.app",
                        "-y",
                        str(ROOT / "deploy" / "celery.yaml"),
                        "-n",
                        f"w{n}",
                        "--",
                        "--concurrency=2",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        while not all("ready." in log.read_text(errors="replace") for log in logs):
            time.sleep(0.2)
        wall, cpu, stack_cpu, rss = run_dagster(args, env, workdir / f"{label}.log")
    finally:
        for proc in [*procs, redis]:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    ops, events = ops_work(home, size)
    return Measure(label, size, wall, cpu, stack_cpu, ops, rss, events)


def postgres_measure(label: str, workdir: Path, stack_env: dict[str, str], size: int, day: str) -> Measure:
    """The morning of `size` targets on the production shape: deploy/dagster.yaml (PostgreSQL storage of
    its own cluster, the queued run coordinator, op pools, run monitoring, compute logs in S3), a gRPC
    code server, the daemon and a webserver, each a process of its own; the run launched as the UI
    launches it (queued; the daemon dequeues it and the code server starts its run worker, as for a
    scheduled run). Wall is the run's own, from its creation to its end; CPU is the machine's meanwhile,
    so the daemon, the code server, the webserver and Dagster's PostgreSQL count as Dagster's."""
    sys.path.insert(0, str(ROOT))
    from unload_assets_local.postgres import PostgresCluster

    from unload_assets_tests.support.production import ProductionShape, create_database

    catalogue = write_catalogue(workdir / f"catalogue-{label}.yaml", size)
    cluster = PostgresCluster(workdir / f"dagster-pg-{label}").start()
    if PG_TRUST:  # no password exchange per connection: what SCRAM costs Dagster's connect-per-query
        (cluster.data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        cluster._ctl("reload")
    create_database(cluster.dsn(superuser=True, database="postgres"), "dagster", cluster.user)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env.update(stack_env)
    env.pop("UNLOAD_SENSOR_INTERVAL_SECONDS", None)  # the sensors' production interval, not the demo's
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        UNLOAD_TARGETS_FILE=str(catalogue),
        DAGSTER_PG_HOST="127.0.0.1",
        DAGSTER_PG_PORT=str(cluster.port),
        DAGSTER_PG_USERNAME=cluster.user,
        DAGSTER_PG_PASSWORD=cluster.password,
        DAGSTER_PG_DB="dagster",
    )
    shape = ProductionShape(workdir / f"services-{label}", env)
    try:
        shape.start(timeout=600)
        time.sleep(5)  # the daemon's first ticks (sensors, schedules) out of the way
        services = {
            "code server and runs": {os.getsid(shape.code_server.proc.pid)},  # type: ignore[union-attr]
            "daemon": {os.getsid(shape.daemon.proc.pid)},  # type: ignore[union-attr]
            "webserver": {os.getsid(shape.webserver.proc.pid)},  # type: ignore[union-attr]
            "Dagster's PostgreSQL": {
                os.getsid(int((cluster.data_dir / "postmaster.pid").read_text().split()[0]))
            },
        }
        before = {name: session_cpu(sids) for name, sids in services.items()}
        busy0, stack0 = machine_busy(), session_cpu(STACK_SESSIONS)
        run_id = shape.client.launch(DAILY_JOB, partition=day)
        with shape.instance() as instance:
            while True:
                run = instance.get_run_by_id(run_id)
                if run is not None and run.is_finished:
                    break
                time.sleep(1)
            cpu, stack_cpu = machine_busy() - busy0, session_cpu(STACK_SESSIONS) - stack0
            spent = {name: session_cpu(sids) - before[name] for name, sids in services.items()}
            print(f"{label}: CPU s by process: " + ", ".join(f"{n} {v:.1f}" for n, v in spent.items()))
            record = instance.get_run_record_by_id(run_id)
            assert record is not None and record.end_time is not None
            wall = record.end_time - record.create_timestamp.timestamp()
            ops, events = run_work(instance, run_id, size)
    finally:
        shape.stop()
        cluster.stop()
    return Measure(label, size, wall, cpu, stack_cpu, ops, 0.0, events)


class Printed(list[Measure]):
    """Each measure printed as it comes: a long benchmark shows what it has even if a later run fails."""

    def append(self, r: Measure) -> None:
        super().append(r)
        print(
            f"{r.label:<16}{r.targets:>8}{r.wall:>9.2f}{r.cpu:>9.2f}{r.stack_cpu:>9.2f}{r.ops:>9.2f}"
            f"{r.wall / r.targets:>10.3f}{r.cpu / r.targets:>9.3f}"
            f"{(r.cpu - r.stack_cpu) / r.targets:>15.3f}{r.rss_mb:>13.0f}{r.events / r.targets:>12.1f}",
            flush=True,
        )


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=sizes, default=[10, 100], help="catalogue sizes of the morning runs")
    parser.add_argument("--one-of", type=sizes, default=[], help="catalogues to materialise one target of")
    parser.add_argument("--cli-size", type=int, default=0, help="also `asset materialize` M targets")
    parser.add_argument(
        "--postgres", type=sizes, default=[], help="also mornings of these sizes on the production shape"
    )
    parser.add_argument("--rows", type=int, default=20_000, help="demo rows in public.sales")
    parser.add_argument(
        "--celery", type=sizes, default=[], help="also run mornings of these sizes on 2 Celery workers"
    )
    parser.add_argument(
        "--pg-trust",
        action="store_true",
        help="the production shape's PostgreSQL trusts loopback (no SCRAM exchange per connection)",
    )
    args = parser.parse_args()
    global PG_TRUST
    PG_TRUST = args.pg_trust
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-morning-"))
    workdir.chmod(0o755)  # the `postgres` user enters it when we run as root
    proc, stack_env = start_stack(workdir, args.rows)
    STACK_SESSIONS.update(stack_sessions(proc, workdir))
    print(f"stack sessions measured: {sorted(STACK_SESSIONS)}")
    try:
        timezone = stack_env.get("UNLOAD_TIMEZONE") or os.getenv("UNLOAD_TIMEZONE") or DEFAULT_TIMEZONE
        day = previous_day(None, timezone).isoformat()
        print(f"partition {day} ({timezone}), {args.rows:,} rows in public.sales, {os.cpu_count()} CPUs")
        print(
            f"{'run':<16}{'targets':>8}{'wall s':>9}{'CPU s':>9}{'stack s':>9}{'ops s':>9}"
            f"{'wall/tgt':>10}{'CPU/tgt':>9}{'Dagster CPU/tgt':>15}{'peak RSS MB':>13}{'events/tgt':>12}",
            flush=True,
        )
        results = Printed()
        tags = json.dumps({"dagster/partition": day})  # what the schedule's RunRequest(partition_key=) sets
        for n in args.sizes:
            job = ["job", "execute", "-m", MODULE, "-j", DAILY_JOB, "--tags", tags]
            results.append(measure(f"morning-{n}", workdir, stack_env, n, n, job))
        for n in args.postgres:
            results.append(postgres_measure(f"postgres-{n}", workdir, stack_env, n, day))
        for n in args.celery:
            job = ["job", "execute", "-m", MODULE, "-j", DAILY_JOB, "--tags", tags]
            results.append(celery_measure(f"celery-{n}", workdir, stack_env, n, job, workers=2))
        if args.cli_size:
            m = args.cli_size
            select = ["asset", "materialize", "-m", MODULE, "--select", "group:unloads", "--partition", day]
            results.append(measure(f"cli-{m}", workdir, stack_env, m, m, select))
        for k in args.one_of:
            one = ["asset", "materialize", "-m", MODULE, "--select", "s3/t0001", "--partition", day]
            results.append(measure(f"one-of-{k}", workdir, stack_env, k, 1, one))
            results.append(floor_measure(f"floor-one-of-{k}", workdir, k, day))
        print(f"benchmark wall time {time.perf_counter() - started:.0f} s")
    finally:
        stop_stack(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
