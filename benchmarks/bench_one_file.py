"""One split CSV + GZIP + HEADER output delivered as one object: our rename vs Sling, side by side.

Run by hand:  .venv/bin/python benchmarks/bench_one_file.py [--rows 1000000] [--sling PATH]

Both read the same query from the same local stack (the Redshift emulator with 4 slices, the moto S3
server, each in a process of its own started with `unload-assets-local up`):
- ours: the asset `s3/big` (csv, gzip, header, PARALLEL ON, on_split: combine) materialised in this
  process, as `dagster asset materialize` runs it: UNLOAD without HEADER, then the rename writes the
  header member and combines the staged files server-side;
- Sling (`pip install sling-linux-amd64`; pass the binary with --sling): its Redshift source with
  `aws_bucket` set UNLOADs (CSV, GZIP, HEADER, PARALLEL) to a temporary prefix, downloads every file,
  decompresses, re-encodes and uploads one `big.csv.gz`.
Printed per method: wall time, CPU (this process for ours: Dagster, the ops and boto3; the sling
process for Sling), bytes of object data through the client, and what sits at the final key
(objects, header lines, data rows after decompression).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import boto3
from stack_process import start_stack, stop_stack

BIN = Path(sys.executable).parent
BUCKET = "unload-local"
SQL = "select * from public.sales"


def s3_client(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def final_state(s3: Any, prefix: str) -> str:
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    if len(objects) != 1:
        return f"{len(objects)} objects: " + ", ".join(o["Key"].rsplit("/", 1)[1] for o in objects)
    (obj,) = objects
    text = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()).decode()
    records = list(csv.reader(io.StringIO(text, newline="")))
    headers = sum(1 for r in records if r[:1] == ["sale_id"])
    name = obj["Key"].rsplit("/", 1)[1]
    return f"1 object {name} ({obj['Size']:,} B): {headers} header, {len(records) - headers:,} rows"


def run_ours(workdir: Path) -> tuple[float, float, int, int]:
    import dagster as dg

    from unload_assets.component import build_definitions
    from unload_assets_tests.support.this_project import asset_key_for

    catalogue = workdir / "big.yaml"
    catalogue.write_text(
        textwrap.dedent(f"""
        targets:
          - name: big
            description: 1M rows, csv + gzip + header, PARALLEL ON
            sql: {SQL}
            key_template: exports/big/big.csv.gz
            format: csv
            compression: gzip
            header: true
            parallel: true
        """)
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    defs = build_definitions(catalogue)
    key = asset_key_for("big")
    job = defs.resolve_implicit_job_def_def_for_assets([key])
    assert job is not None
    result = job.execute_in_process(asset_selection=[key], instance=dg.DagsterInstance.ephemeral())
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    [event] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}
    return wall, cpu, int(str(meta["client_bytes"])), int(str(meta["staged_files"]))


def run_sling(sling: str, env: dict[str, str], workdir: Path) -> tuple[float, float, int]:
    source = {
        "type": "redshift",
        "host": env["REDSHIFT_HOST"],
        "port": int(env["REDSHIFT_PORT"]),
        "user": env["REDSHIFT_USER"],
        "password": env["REDSHIFT_PASSWORD"],
        "database": env["REDSHIFT_DATABASE"],
        "sslmode": "disable",
        "aws_bucket": BUCKET,
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "aws_region": env["AWS_DEFAULT_REGION"],
        "aws_endpoint": env["AWS_ENDPOINT_URL_S3"],
    }
    target = {
        "type": "s3",
        "bucket": BUCKET,
        "access_key_id": env["AWS_ACCESS_KEY_ID"],
        "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "endpoint": env["AWS_ENDPOINT_URL_S3"],
        "region": env["AWS_DEFAULT_REGION"],
    }
    run_env = {
        **os.environ,
        "RS": json.dumps(source),
        "S3T": json.dumps(target),
        "SLING_HOME_DIR": str(workdir / "sling"),
        "SLING_DISABLE_TELEMETRY": "true",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    subprocess.run(
        [
            sling,
            "run",
            "--src-conn",
            "RS",
            "--src-stream",
            SQL,
            "--tgt-conn",
            "S3T",
            "--tgt-object",
            f"s3://{BUCKET}/exports/sling/big.csv.gz",
            "--tgt-options",
            '{"format": "csv", "compression": "gzip", "header": true}',
        ],
        env=run_env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    s3 = s3_client(env)
    # Sling downloads every staged file and uploads the result: both are object data through it.
    uploaded = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/sling/")["Contents"][0]["Size"]
    return wall, cpu, uploaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sling", default=shutil.which("sling") or "", help="the sling binary")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-one-file-"))
    workdir.chmod(0o755)  # the `postgres` user enters it when we run as root
    proc, env = start_stack(workdir, args.rows)
    try:
        os.environ.update(env)
        s3 = s3_client(env)
        wall, cpu, client_bytes, staged = run_ours(workdir)
        rows = [("ours (rename)", wall, cpu, f"{client_bytes:,}", final_state(s3, "exports/big/"))]
        if args.sling:
            s_wall, s_cpu, uploaded = run_sling(args.sling, env, workdir)
            # What Sling downloaded is the UNLOAD output: the size of ours plus its header lines.
            final_size = s3.head_object(Bucket=BUCKET, Key="exports/big/big.csv.gz")["ContentLength"]
            through = f">= {final_size + uploaded:,}"
            rows.append(("sling", s_wall, s_cpu, through, final_state(s3, "exports/sling/")))
        print(f"{args.rows:,} rows of `{SQL}`, csv + gzip + header, PARALLEL ON ({staged} staged files)")
        print(f"{'method':<15}{'wall s':>8}{'CPU s':>8}  {'client bytes':>14}  final key")
        for name, w, c, moved, state in rows:
            print(f"{name:<15}{w:>8.2f}{c:>8.2f}  {moved:>14}  {state}")
    finally:
        stop_stack(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
