"""The S3 fault tests' bookkeeping: what a reader of a target's final keys sees, judged strictly.

A target's rows carry their generation in a `gen` column, `<name>:<row count>`. A reader sees the
output through the single object (`rows.csv`) or through the COPY manifest (`rows.csv.manifest` and
its parts). Each view that exists must be ONE generation with every row exactly once; a manifest must
list exactly the parts that exist, with their sizes. Anything else (a mix, a missing or extra part, a
torn object) fails. `Harness` runs the jobs, checks those views while faults are pending and after
every run, and re-executes failed runs from failure.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg
import psycopg2

from unload_assets.component import build_definitions
from unload_assets.delivery import FAILED_TARGETS
from unload_assets.orchestration.retries import Retry, retries_logged
from unload_assets_tests.support.this_project import asset_key_for

BUCKET = "unload-local"
HEADER = ["id", "payload", "gen"]
VIEW = {"fcombine": "object", "fparts": "manifest"}  # how each test target is read
TARGET = """
  - name: {name}
    description: fault test target
    sql: |
      select r.id, r.payload, g.gen from public.fault_rows r
      join public.fault_gen g on g.target = '{name}' and r.id <= g.nrows order by r.id
    key_template: exports/faults/{name}/rows.csv
    format: csv
    header: {header}
    max_file_size_mb: 6
    on_split: {on_split}
"""
CATALOGUE = (
    "targets:"
    + TARGET.format(name="fcombine", header="true", on_split="combine")
    + TARGET.format(name="fparts", header="false", on_split="parts")
)


class Faults(Protocol):
    def clear(self) -> None: ...


def _job(target: str) -> dg.JobDefinition:
    # In-process executor: a run costs ~2 s, and the worker is this process (or a fork of it).
    defs = build_definitions(os.environ["FAULT_CATALOGUE"])
    job = dg.define_asset_job(
        f"{target}_job", selection=[asset_key_for(target)], executor_def=dg.in_process_executor
    )
    defs = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[job]
    )
    return defs.resolve_job_def(f"{target}_job")


# Module level so `reconstructable` can rebuild them for re-execution from failure.
def fcombine_job() -> dg.JobDefinition:
    return _job("fcombine")


def fparts_job() -> dg.JobDefinition:
    return _job("fparts")


JOBS = {"fcombine": fcombine_job, "fparts": fparts_job}


@dataclass
class Views:
    complete: dict[str, str] = field(default_factory=dict)  # "object" / "manifest" -> generation
    parts_without_manifest: int = 0  # parts of an output being rewritten (its manifest withdrawn)


def _generation(data: bytes, where: str) -> str:
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    if rows and rows[0] == HEADER:
        rows = rows[1:]
    gens = {row[2] for row in rows}
    assert len(gens) == 1, f"{where}: rows of generations {sorted(gens)} mixed"
    gen = gens.pop()
    count = int(gen.rsplit(":", 1)[1])
    ids = sorted(int(row[0]) for row in rows)
    assert ids == list(range(1, count + 1)), f"{where}: {len(ids)} rows, not each of 1..{count} once"
    return gen


def _body(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def views(s3: Any, target: str, judged: dict[tuple[str, ...], str] | None = None) -> Views:
    """The views of `target`'s output; `judged` remembers generations by ETags, to read each state once."""
    judged = {} if judged is None else judged
    folder = f"exports/faults/{target}/"
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=folder).get("Contents", [])
    sizes = {o["Key"]: o["Size"] for o in listing}
    etags = {o["Key"]: o["ETag"] for o in listing}
    final, manifest = folder + "rows.csv", folder + "rows.csv.manifest"
    parts = {k for k in sizes if ".part-" in k}
    found = Views()
    if final in sizes:
        seen = (final, etags[final])
        judged[seen] = judged.get(seen) or _generation(_body(s3, final), final)
        found.complete["object"] = judged[seen]
    if manifest not in sizes:
        found.parts_without_manifest = len(parts)
        return found
    entries = json.loads(_body(s3, manifest))["entries"]
    listed = {e["url"].split("/", 3)[3]: e["meta"]["content_length"] for e in entries}
    assert parts == set(listed), f"{manifest} lists {sorted(listed)}, the folder has {sorted(parts)}"
    for key, size in listed.items():
        assert sizes[key] == size, f"{key}: {sizes[key]} bytes, the manifest says {size}"
    seen = (manifest, *(etags[k] for k in (manifest, *listed)))
    if seen not in judged:
        judged[seen] = _generation(b"".join(_body(s3, key) for key in listed), manifest)
    found.complete["manifest"] = judged[seen]
    return found


class Harness:
    def __init__(self, faults: Faults, instance: dg.DagsterInstance, dsn: str, s3: Any, rows: int) -> None:
        self.rows = rows  # a generation's row count unless told otherwise
        self.faults, self.instance, self.dsn, self.s3 = faults, instance, dsn, s3
        self.current: dict[str, str] = {}  # target -> generation of its complete output
        self.verified = self.runs = 0
        self.problems: list[str] = []  # assertion failures inside the proxy's threads
        self.judged: dict[tuple[str, ...], str] = {}  # generations of output states already read

    def generation(self, target: str, name: str, rows: int | None = None) -> str:
        """The rows the next run of `target` unloads: `rows` of them, labelled `<name>:<rows>`."""
        rows = rows or self.rows
        gen = f"{name}:{rows}"
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "insert into public.fault_gen values (%s, %s, %s)"
                " on conflict (target) do update set gen = excluded.gen, nrows = excluded.nrows",
                (target, gen, rows),
            )
        return gen

    def run(
        self, target: str, *, from_failure: str | None = None, from_asset_failure: str | None = None
    ) -> dg.ExecuteJobResult:
        """A run of `target`'s job; or a re-execution of a failed run: from its failed step (the rename
        again, from the S3 handoff), or from asset failure (the targets not delivered, UNLOAD included)."""
        self.runs += 1
        options = dg.ReexecutionOptions.from_failure(from_failure, self.instance) if from_failure else None
        selection = undelivered(self.instance, from_asset_failure) if from_asset_failure else None
        with dg.execute_job(
            dg.reconstructable(JOBS[target]),
            instance=self.instance,
            reexecution_options=options,
            asset_selection=selection,
        ) as result:
            return result

    def prime(self) -> None:
        """A first complete output of every target: the previous output the faults must not damage."""
        for target in JOBS:
            self.current[target] = gen = self.generation(target, "first")
            self.settle(target, self.run(target), gen)

    def remove_outputs(self) -> None:
        """Delete what the fault tests wrote (the S3 server is shared by the whole session)."""
        for prefix in ("exports/faults/", *(f"_staging/{target}/" for target in JOBS)):
            keys = [{"Key": k} for k in self.listing(prefix)]
            if keys:
                self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})

    def listing(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def staging_left(self, target: str) -> list[str]:
        return self.listing(f"_staging/{target}/")

    def look(self, target: str, allowed: set[str]) -> Views:
        found = views(self.s3, target, self.judged)
        assert set(found.complete.values()) <= allowed, (target, found, allowed)
        self.verified += len(found.complete)
        return found

    def watch(self, target: str, new: str) -> Callable[[Any], None]:
        """`on_inject`/`on_fire` hook: judge the final output while the fault is pending."""
        allowed = {self.current[target], new}

        def hook(request: Any) -> None:
            try:
                self.look(target, allowed)
            except Exception as exc:  # noqa: BLE001 - reported by `settle`, not lost in a server thread
                self.problems.append(f"during a fault on {request.operation}: {exc!r}")

        return hook

    def settle(self, target: str, result: dg.ExecuteJobResult, new: str) -> dg.ExecuteJobResult:
        """After a run: no problem seen mid-run; a failed run left old or new; re-execute until done."""
        assert not self.problems, self.problems
        self.faults.clear()
        if not result.success:
            self.look(target, {self.current[target], new})
            unloaded = all(f["stage"] == "rename" for f in failed_targets(result).values())
            how = "from_failure" if unloaded else "from_asset_failure"
            result = self.run(target, **{how: result.run_id})
        assert result.success
        found = self.look(target, {new})
        assert found.complete == {VIEW[target]: new} and not found.parts_without_manifest, found
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks == {"delivered": True}
        self.current[target] = new
        return result


def create_tables(dsn: str, rows: int) -> None:
    """`fault_rows` (~280 bytes a row) and `fault_gen`, which says what each target's next run unloads."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.fault_rows, public.fault_gen")
        cur.execute(
            "create table public.fault_rows as"
            " select g as id, repeat(md5(g::text), 8) as payload from generate_series(1, %s) g",
            (rows,),
        )
        cur.execute("create table public.fault_gen (target text primary key, gen text, nrows int)")


def wait_for_child(pid: int, timeout: float) -> int:
    """The child's exit status; a child that hangs (a lock inherited mid-use by fork) fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked run worker did not reach its DeleteObjects within {timeout:.0f}s")


def step_retries(result: dg.ExecuteJobResult) -> list[str]:
    """Steps Dagster retried whole (a crashed process); a target's own retries are `target_retries`."""
    return [e.step_key or "" for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def target_retries(instance: dg.DagsterInstance, run_id: str) -> list[Retry]:
    """The retries of single targets inside the run's steps, from the run's log."""
    return retries_logged(entry.user_message for entry in instance.all_logs(run_id))


def failed_targets(result: dg.ExecuteJobResult) -> dict[str, dict[str, str]]:
    """{target: {stage, error}} that the run's rename step reported as not delivered."""
    found: dict[str, dict[str, str]] = {}
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.user_failure_data:
            value = event.step_failure_data.user_failure_data.metadata.get(FAILED_TARGETS)
            found.update(value.value if value else {})
    return found


def undelivered(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetKey]:
    """What "re-execute from asset failure" selects: the assets the run planned but did not materialise."""
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_MATERIALIZATION}
    planned, done = set(), set()
    for record in instance.get_records_for_run(run_id, of_type=kinds, limit=10_000).records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.asset_key is not None:
            is_planned = event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            (planned if is_planned else done).add(event.asset_key)
    return sorted(planned - done, key=lambda k: k.to_string())
