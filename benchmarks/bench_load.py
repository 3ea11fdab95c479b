"""How long the code location takes to load for catalogues of 1, 100 and 1000 targets.

Run by hand:  .venv/bin/python benchmarks/bench_load.py [--reps 3] [--floor] [--profile 1000]

Per size:
- `dagster definitions validate -w workspace.yaml` end to end (a fresh process: imports included),
  as wall time and as the CPU time of that process (steadier than wall time on a shared machine),
- the in-process build: `build_definitions(path)` + resolving the repository (imports excluded), as
  CPU time: the build is single-threaded, so on an idle machine this is its wall time.
Target: 1000 targets within 2x the 1-target time.

--floor adds Dagster's own floor for the same shape: one graph-backed multi-asset of N outputs with
four check specs each, two ops, daily partitions, subsettable, and one job over it, written with the
plain decorators (no lineage, metadata, schedules, sensors or resources), validated with
`dagster definitions validate -f`.
--profile N times each phase of loading N targets in-process (what validate does after its imports,
minus its second call of the definitions function) and writes a cProfile of it.
"""

from __future__ import annotations

import argparse
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
TARGET = """
  - name: sales_{i:04d}
    description: Generated target {i}.
    sql: |
      select s.sale_id, s.sale_date, s.amount, c.country
      from public.sales s join public.customers c using (customer_id)
      where s.sale_date = {{{{ partition_date }}}} and s.quantity > {i}
    key_template: exports/gen/{i:04d}/{{date}}/sales_{{date}}.csv.gz
    partitioning: {{type: daily, start_date: "2026-01-01"}}
"""
FLOOR = """
import os

import dagster as dg

N = int(os.environ["FLOOR_TARGETS"])
NAMES = [f"t{i}" for i in range(N)]
CHECKS = [
    dg.AssetCheckSpec(check, asset=dg.AssetKey(["s3", name]))
    for name in NAMES
    for check in ("final_objects_present", "has_rows", "staging_cleaned", "one_object")
]
OUTS = [f"s3__{name}" for name in NAMES] + [spec.get_python_identifier() for spec in CHECKS]
DAY = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.op(out={"staged": dg.Out()})
def unload():
    return {}


@dg.op(out={name: dg.Out(is_required=False) for name in OUTS})
def rename(staged):
    yield from ()  # materialises nothing: what is left is Dagster's cost of the step


@dg.graph_multi_asset(
    outs={f"s3__{name}": dg.AssetOut(key=["s3", name]) for name in NAMES},
    check_specs=CHECKS,
    can_subset=True,
    partitions_def=DAY,
)
def unloads():
    result = rename(unload())
    return {name: getattr(result, name) for name in OUTS}


JOB = dg.define_asset_job("daily", selection="*", partitions_def=DAY)
defs = dg.Definitions(assets=[unloads], jobs=[JOB])
"""
PHASES = """
import cProfile, gc, sys, time
from dagster._core.remote_representation.external_data import RepositorySnap
from unload_assets.component import build_definitions
profile, times, in_gc, started_gc = cProfile.Profile(), {}, [0.0], [0.0]
# cProfile charges a collection to whichever function allocated at the time: count GC separately.
def on_gc(event, _):
    if event == "start": started_gc[0] = time.process_time()
    else: in_gc[0] += time.process_time() - started_gc[0]
gc.callbacks.append(on_gc)
def phase(name, fn):
    started, gc_before = time.process_time(), in_gc[0]
    profile.enable(); result = fn(); profile.disable()
    times[name] = (time.process_time() - started, in_gc[0] - gc_before)
    return result
defs = phase("build_definitions", lambda: build_definitions(sys.argv[1]))
repo = phase("get_repository_def", defs.get_repository_def)
phase("load_all_definitions (jobs)", repo.load_all_definitions)
phase("RepositorySnap (what the UI reads)", lambda: RepositorySnap.from_def(repo))
profile.dump_stats(sys.argv[2])
for name, (seconds, collecting) in times.items():
    print(f"  {name:<36} {seconds:6.2f} s cpu (profiled), of which garbage collection {collecting:5.2f} s")
"""


def write_catalogue(directory: Path, n: int) -> Path:
    path = directory / f"catalogue_{n}.yaml"
    body = "defaults:\n  compression: gzip\n  header: true\n  owners: ['team:bench']\ntargets:\n"
    path.write_text(body + "".join(TARGET.format(i=i) for i in range(n)))
    return path


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_validate(catalogue: Path) -> tuple[float, float]:
    env = {**os.environ, "UNLOAD_TARGETS_FILE": str(catalogue)}
    return _timed([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"], env)


def time_floor(module: Path, n: int) -> tuple[float, float]:
    return _timed(
        [DAGSTER, "definitions", "validate", "-f", str(module)], {**os.environ, "FLOOR_TARGETS": str(n)}
    )


def time_in_process(catalogue: Path) -> float:
    code = (
        "import time; from unload_assets.component import build_definitions; t = time.process_time(); "
        f"d = build_definitions({str(catalogue)!r}); d.get_repository_def(); print(time.process_time() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def _median(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def profile(catalogue: Path, n: int) -> None:
    out = Path(tempfile.gettempdir()) / f"bench_load_{n}.prof"
    print(f"\nphases of loading {n} targets in-process:")
    subprocess.run([sys.executable, "-c", PHASES, str(catalogue), str(out)], cwd=REPO, check=True)
    print(f"cProfile written to {out}; top functions by own time:")
    pstats.Stats(str(out)).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--floor", action="store_true", help="also time Dagster's floor for each size")
    parser.add_argument("--profile", type=int, metavar="N", help="profile the load of N targets")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        floor_module = Path(tmp) / "floor_defs.py"
        floor_module.write_text(FLOOR)
        for n in args.sizes:
            catalogue = write_catalogue(Path(tmp), n)
            wall, cpu = _median([time_validate(catalogue) for _ in range(args.reps)])
            build = statistics.median(time_in_process(catalogue) for _ in range(args.reps))
            floor = _median([time_floor(floor_module, n) for _ in range(args.reps)]) if args.floor else None
            rows.append((n, wall, cpu, build, floor))
        print_table(rows)
        if args.profile:
            profile(write_catalogue(Path(tmp), args.profile), args.profile)


def print_table(rows: list[tuple[int, float, float, float, tuple[float, float] | None]]) -> None:
    _, base_wall, base_cpu, base_build, base_floor = rows[0]
    head = f"{'targets':>8}  {'validate s':>10}  {'x 1-target':>10}  {'cpu s':>6}  {'x 1-target':>10}"
    print(f"{head}  {'in-process cpu s':>16}  {'x 1-target':>10}")
    for n, wall, cpu, build, _ in rows:
        line = f"{n:>8}  {wall:>10.2f}  {wall / base_wall:>10.2f}  {cpu:>6.2f}  {cpu / base_cpu:>10.2f}"
        print(f"{line}  {build:>16.3f}  {build / base_build:>10.1f}")
    if base_floor is not None:
        print("floor: the same shape with plain decorators, `dagster definitions validate -f`")
        for n, *_, floor in rows:
            wall, cpu = floor or (0.0, 0.0)
            line = f"{n:>8}  {wall:>10.2f}  {wall / base_floor[0]:>10.2f}"
            print(f"{line}  {cpu:>6.2f}  {cpu / base_floor[1]:>10.2f}")


if __name__ == "__main__":
    main()
