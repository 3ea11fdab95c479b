"""A year's backfill as the UI launches one: wall time, runs, events written, Slack messages.

Run by hand:  .venv/bin/python benchmarks/bench_backfill.py [--days 365] [--days-per-run 30]
                                                            [--shapes one,demo] [--rows 36500]

Against the local stack (`unload-assets-local up --days N+1`: demo sales on every day backfilled), with
`dagster dev` (webserver, daemon with its backfill daemon and the Slack sensors; SQLite storage in a fresh
DAGSTER_HOME), each shape's backfill is launched through GraphQL `launchPartitionBackfill` with the asset
selection and the partitions, exactly as the asset page's "Materialize" of a range launches it. The daemon
runs it under the assets' backfill policy (`backfill_days_per_run`); the clock stops when the Slack
stand-in has the backfill's message (the sensors post it once the backfill is over):
- one:  one daily target (`select ... from public.sales where sale_date = {{ partition_date }}`), the
        last N days;
- demo: the demo catalogue's daily targets (unload_assets/unload_targets.yaml), every partition up to
        yesterday (its start date to yesterday: up to N days).
Printed per shape: wall time (launch to Slack message), runs, days delivered, events written (every
event-log entry of the backfill's runs), Slack messages posted meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from unload_assets.catalogue.load import read_catalogue
from unload_assets.names import Names

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack_process import start_stack, stop_stack  # noqa: E402
from unload_assets_local.devserver import DagsterDev  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = Names("unloads")
ONE = """
targets:
  - name: bench_sales
    description: one day of sales
    sql: >-
      select sale_id, sale_date, customer_id, product, quantity, amount
      from public.sales where sale_date = {{{{ partition_date }}}} order by sale_id
    key_template: exports/bench/{{date}}/sales_{{date}}.csv.gz
    format: csv
    compression: gzip
    header: true
    partitioning: {{type: daily, start_date: "{start}"}}
"""


def yesterday(zone: str) -> date:
    return datetime.now(ZoneInfo(zone)).date() - timedelta(days=1)


def shape_of(name: str, workdir: Path, days: int, zone: str) -> tuple[Path, list[str], list[str]]:
    """The shape's catalogue, its daily targets, and the days to backfill."""
    last = yesterday(zone)
    if name == "one":
        first = last - timedelta(days=days - 1)
        path = workdir / "one.yaml"
        path.write_text(ONE.format(start=first.isoformat()))
        targets = ["bench_sales"]
    else:
        path = REPO / "unload_assets" / "unload_targets.yaml"
        catalogue = read_catalogue(path)
        daily = [t for t in catalogue.targets if t.partitioning.type == "daily"]
        targets = [t.name for t in daily]
        start = max(t.partitioning.start_date for t in daily if t.partitioning.start_date)
        first = max(start, last - timedelta(days=days - 1))
    count = (last - first).days + 1
    return path, targets, [(first + timedelta(days=n)).isoformat() for n in range(count)]


def slack_messages(env: dict[str, str]) -> list[dict]:
    import json
    import urllib.request

    base = env["SLACK_API_URL"].removesuffix("/api/")
    with urllib.request.urlopen(f"{base}/messages", timeout=30) as answer:
        return list(json.loads(answer.read()))


def measure(name: str, workdir: Path, env: dict[str, str], days: int, per_run: int) -> dict[str, object]:
    zone = env.get("UNLOAD_TIMEZONE") or "America/Los_Angeles"
    catalogue, targets, partitions = shape_of(name, workdir, days, zone)
    project = workdir / name
    project.mkdir()
    (project / "workspace.yaml").write_text(
        f"load_from:\n  - python_module:\n      module_name: unload_assets.definitions\n"
        f"      working_directory: {REPO}\n"
    )
    run_env = {
        **env,
        "UNLOAD_TARGETS_FILE": str(catalogue),
        "UNLOAD_BACKFILL_DAYS_PER_RUN": str(per_run),
        "UNLOAD_SENSOR_INTERVAL_SECONDS": "5",
    }
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in run_env.items()))
    home = project / "dagster_home"
    before = len(slack_messages(env))
    with DagsterDev(
        project_dir=project, dagster_home=home, log_file=project / "dagster.log", env=run_env
    ) as dev:
        keys = [list(NAMES.asset_key(t).path) for t in targets]
        started = time.monotonic()
        backfill = dev.launch_asset_backfill(keys, partitions)
        marker = f"backfill/{backfill}"
        while True:
            found = [
                m
                for m in slack_messages(env)[before:]
                if ((m.get("metadata") or {}).get("event_payload") or {}).get("run_id") == marker
            ]
            if found:
                break
            if not dev.running():
                raise RuntimeError(f"dagster dev exited; see {dev.log_file}")
            time.sleep(1)
        wall = time.monotonic() - started
        status = dev.backfill_status(backfill)
        messages = slack_messages(env)[before:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill}))
        events = sum(len(instance.all_logs(run.run_id)) for run in runs)
        delivered = sum(
            len(instance.get_materialized_partitions(NAMES.asset_key(t)) & set(partitions)) for t in targets
        )
    return {
        "shape": name,
        "targets": len(targets),
        "days": len(partitions),
        "wall_s": round(wall, 1),
        "runs": len(runs),
        "delivered": f"{delivered} of {len(targets) * len(partitions)} target-days",
        "events": events,
        "slack_messages": len(messages),
        "status": status,
        "first_message": messages[0]["text"].splitlines()[0] if messages else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365, help="days to backfill")
    parser.add_argument("--days-per-run", type=int, default=30, help="backfill_days_per_run")
    parser.add_argument("--shapes", default="one,demo", help="one (a daily target), demo (the catalogue's)")
    parser.add_argument("--rows", type=int, default=36_500, help="demo rows in public.sales, over the days")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        workdir = Path(tmp)
        stack, env = start_stack(workdir, args.rows, days=args.days + 1)
        try:
            results = [measure(s, workdir, env, args.days, args.days_per_run) for s in args.shapes.split(",")]
        finally:
            stop_stack(stack)
    print(f"\nbackfill of up to {args.days} days, {args.days_per_run} days per run")
    head = f"{'shape':6} {'targets':>7} {'days':>5} {'wall s':>7} {'runs':>5} {'events':>7} {'slack':>6}"
    print(head + "  delivered")
    for r in results:
        print(
            f"{r['shape']:6} {r['targets']:>7} {r['days']:>5} {r['wall_s']:>7} {r['runs']:>5} "
            f"{r['events']:>7} {r['slack_messages']:>6}  {r['delivered']} ({r['status']})"
        )
        print(f"       {r['first_message']}")


if __name__ == "__main__":
    main()
