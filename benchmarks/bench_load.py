"""How long the code location takes to load for catalogues of 1, 100 and 1000 targets.

Run by hand:  .venv/bin/python benchmarks/bench_load.py [--reps 3]

Two measurements per size:
- `dagster definitions validate -w workspace.yaml` end to end (a fresh process: imports included),
- the in-process build: `build_definitions(path)` + resolving the repository (imports excluded).
Target: 1000 targets within 2x the 1-target time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def write_catalogue(directory: Path, n: int) -> Path:
    path = directory / f"catalogue_{n}.yaml"
    body = "defaults:\n  compression: gzip\n  header: true\n  owners: ['team:bench']\ntargets:\n"
    path.write_text(body + "".join(TARGET.format(i=i) for i in range(n)))
    return path


def time_validate(catalogue: Path) -> float:
    env = {**os.environ, "UNLOAD_TARGETS_FILE": str(catalogue)}
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, check=True, capture_output=True,
    )
    return time.perf_counter() - started


def time_in_process(catalogue: Path) -> float:
    code = (
        "import time; from unload_assets.definitions import build_definitions; t = time.perf_counter(); "
        f"d = build_definitions({str(catalogue)!r}); d.get_repository_def(); print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            catalogue = write_catalogue(Path(tmp), n)
            validate = statistics.median(time_validate(catalogue) for _ in range(args.reps))
            build = statistics.median(time_in_process(catalogue) for _ in range(args.reps))
            rows.append((n, validate, build))
    base_validate, base_build = rows[0][1], rows[0][2]
    print(f"{'targets':>8}  {'validate s':>10}  {'x 1-target':>10}  {'in-process s':>12}  {'x 1-target':>10}")
    for n, validate, build in rows:
        print(f"{n:>8}  {validate:>10.2f}  {validate / base_validate:>10.2f}  {build:>12.3f}  {build / base_build:>10.1f}")


if __name__ == "__main__":
    main()
