"""`make run`: the local stack, `dagster dev`, this morning's runs launched through the webserver.

The runs go through the webserver's GraphQL API (what the Launch/Materialize buttons do) and are
executed by the daemon's run launcher, so the Slack messages printed at the end were posted by the
sensor running in the daemon, exactly as in production.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import unload_assets
from unload_assets.catalogue.load import read_catalogue
from unload_assets.names import Names
from unload_assets_local.devserver import DagsterDev, stop_process_group
from unload_assets_local.postgres import free_port
from unload_assets_local.webserver_client import DagsterDevError

ROOT = Path.cwd()
STATE = ROOT / ".local-stack"
THIS_PROJECT = "unloads"  # the name of this repository's instance, in its defs.yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after printing the result")
    parser.add_argument("--rows", type=int, default=100_000, help="demo rows in public.sales")
    args = parser.parse_args(argv)
    STATE.mkdir(exist_ok=True)
    port = 3000 if _port_free(3000) else free_port()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = _start_stack(args.rows, f"http://127.0.0.1:{port}")
    dev = DagsterDev(
        project_dir=ROOT, dagster_home=ROOT / ".dagster_home", log_file=STATE / "dagster.log", port=port
    )
    try:
        print(f"Starting dagster dev on {dev.url} (logs: .local-stack/dagster.log) ...", flush=True)
        dev.start()
        _print_catalogue(STATE / "dagster.log")
        ok = _morning_runs(dev, _read_env(ROOT / ".env"))
        if not args.once:
            print(f"\nThe Dagster UI stays up at {dev.url} — Ctrl-C stops everything.", flush=True)
            while dev.running() and stack.poll() is None:
                time.sleep(1)
        return 0 if ok else 1
    except DagsterDevError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("Stopping dagster dev and the local stack ...", flush=True)
        dev.stop()
        stop_process_group(stack, timeout=60)


def _print_catalogue(log: Path) -> None:
    """What the code location said as it loaded its catalogue: which file, from where, and any problem."""
    said = [
        re.sub(r"\x1b\[[0-9;]*m", "", line).split(" - ", 3)[-1]
        for line in log.read_text(errors="replace").splitlines()
        if "dagster.builtin.unload_assets" in line
    ]
    for line in list(dict.fromkeys(said))[:10]:  # each process that loads the location says it again
        print(f"  {line}", flush=True)


def _days_of_the_catalogue() -> int:
    """Sales from the first day of the demo catalogue's daily partitions to yesterday: the partitions the
    UI shows are the days there is data for, and a backfill of the missing days unloads no empty day."""
    catalogue = read_catalogue(Path(unload_assets.__file__).with_name("unload_targets.yaml"))
    starts = [t.partitioning.start_date for t in catalogue.targets if t.partitioning.type == "daily"]
    first = min(starts, default=datetime.now().date() - timedelta(days=30))
    return max(1, (datetime.now().date() - first).days)


def _start_stack(rows: int, webserver_url: str) -> subprocess.Popen[bytes]:
    print("Starting the local stack (logs: .local-stack/stack.log) ...", flush=True)
    (STATE / "ready").unlink(missing_ok=True)
    log = STATE / "stack.log"
    cmd = [
        str(Path(sys.executable).parent / "unload-assets-local"),
        "up",
        "--rows",
        str(rows),
        "--days",
        str(_days_of_the_catalogue()),
        "--redshift-port",
        "0",
        "--webserver-url",
        webserver_url,
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (STATE / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc, timeout=60)
            raise SystemExit(
                f"The local stack did not start; see {log}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.3)
    print(_indent(log.read_text(errors="replace").split("Ready.")[0].strip()), flush=True)
    return proc


def _morning_runs(dev: DagsterDev, env: dict[str, str]) -> bool:
    tz = ZoneInfo(env.get("UNLOAD_TIMEZONE") or "America/Los_Angeles")
    yesterday = (datetime.now(tz).date() - timedelta(days=1)).isoformat()
    already = len(_slack_messages(env))  # the stand-in keeps history across restarts
    statuses = []
    names = Names(THIS_PROJECT)  # this repository's instance (unload_assets/defs/unload_targets/defs.yaml)
    for job, partition in ((names.daily_job(), yesterday), (names.unpartitioned_job, None)):
        run_id = dev.launch(job, partition=partition)
        print(f"\nLaunched {job}" + (f" for {partition}" if partition else "") + f": {dev.url}/runs/{run_id}")
        status = dev.wait_for_run(
            run_id, on_step=lambda step, state: print(f"  {step:<45} {state}", flush=True)
        )
        print(f"Run {status}.", flush=True)
        statuses.append(status)
    _print_objects(env)
    _print_slack(env, already=already, expected=len(statuses))
    print(f"\nDagster UI: {dev.url}  (lineage: {dev.url}/asset-groups, runs: {dev.url}/runs)")
    return all(status == "SUCCESS" for status in statuses)


def _print_objects(env: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    bucket, staging = env["UNLOAD_BUCKET"], env.get("UNLOAD_STAGING_PREFIX", "_staging")
    print(f"\nFinal objects in s3://{bucket}/ (staging under {staging}/ excluded):")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if not obj["Key"].startswith(staging + "/"):
                print(f"  s3://{bucket}/{obj['Key']:<55} {obj['Size']:>12,} bytes")


def _slack_messages(env: dict[str, str]) -> list[dict[str, str]]:
    url = env["SLACK_API_URL"].rstrip("/").removesuffix("/api") + "/messages"
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(json.loads(response.read()))


def _print_slack(env: dict[str, str], *, already: int, expected: int, timeout: float = 120) -> None:
    every = env.get("UNLOAD_SENSOR_INTERVAL_SECONDS") or "30"
    print(
        f"\nWaiting for the Slack confirmations (the sensors run in the daemon every {every} s) ...",
        flush=True,
    )
    deadline = time.monotonic() + timeout
    new: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        new = _slack_messages(env)[already:]
        if len(new) >= expected:
            break
        time.sleep(2)
    for message in new:
        print(f"Slack message in {message['channel']}:\n{_indent(message.get('text', ''))}\n")
    if len(new) < expected:
        print(
            f"{len(new)} of {expected} Slack message(s) within {timeout:.0f}s; see .local-stack/dagster.log."
        )


def _read_env(path: Path) -> dict[str, str]:
    # The same reader `dagster dev` uses for `.env`, so both see the same values.
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    raise SystemExit(main())
