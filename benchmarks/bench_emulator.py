"""UNLOAD throughput and memory of the Redshift emulator, against the floor on the same machine.

Run by hand:  .venv/bin/python benchmarks/bench_emulator.py [--rows 1000000] [--rss-rows 10000000]

- emulator: `UNLOAD ('select * from public.sales') ... CSV GZIP PARALLEL OFF` through the emulator;
- floor:    `psql -c "\\copy (select * from public.sales) to stdout csv" | gzip > file`, then one
            boto3 upload of that file to the same S3 server;
- COPY:     the emulator loads the UNLOAD's files back (`COPY ... FROM 's3://...' CSV GZIP`) into an
            empty copy of the table: rows/s and the emulator's peak RSS after it (it must stay flat too).
The emulator and the S3 server run in processes of their own, so the emulator's peak RSS (VmHWM)
is its own and the floor's upload does not share a GIL with the server. Targets: >= 1.0x the
floor's rows/s; peak RSS under 200 MB at 10,000,000 rows (memory must not grow with the data).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import psycopg2
from unload_assets_local.postgres import PostgresCluster, free_port
from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION
from unload_assets_local.seed import seed_demo_data

BUCKET = "bench"
SELECT = "select * from public.sales"
EMULATOR = """
import sys, time
from unload_assets_local.emulator.server import RedshiftEmulator
emu = RedshiftEmulator(pg_host="127.0.0.1", pg_port=int(sys.argv[1]), s3_endpoint_url=sys.argv[2],
                       listen_port=int(sys.argv[3]), superuser_dsn=sys.argv[4]).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=LOCAL_KEY_ID,
        aws_secret_access_key=LOCAL_SECRET,
        region_name=REGION,
    )


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = s3_client(f"http://127.0.0.1:{port}")
    for _ in range(100):
        try:
            client.create_bucket(Bucket=BUCKET)
            return proc
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.2)
    raise RuntimeError("moto_server did not start")


def start_emulator(cluster: PostgresCluster, s3_endpoint: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": LOCAL_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET,
        "AWS_DEFAULT_REGION": REGION,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            EMULATOR,
            str(cluster.port),
            s3_endpoint,
            str(port),
            cluster.dsn(superuser=True),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_copy(cluster: PostgresCluster, port: int, prefix: str) -> float:
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=port,
        user=cluster.user,
        password=cluster.password,
        dbname=cluster.database,
        sslmode="disable",
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("drop table if exists public.sales_back")
        cur.execute("create table public.sales_back (like public.sales)")
        started = time.perf_counter()
        cur.execute(f"COPY public.sales_back FROM 's3://{BUCKET}/{prefix}/' IAM_ROLE default CSV GZIP")
        seconds = time.perf_counter() - started
        cur.execute("select (select count(*) from public.sales_back) = (select count(*) from public.sales)")
        assert cur.fetchone()[0], "COPY did not load every row back"
    conn.close()
    return seconds


def run_emulator(cluster: PostgresCluster, port: int, prefix: str) -> tuple[int, float]:
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=port,
        user=cluster.user,
        password=cluster.password,
        dbname=cluster.database,
        sslmode="disable",
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(
            f"UNLOAD ('{SELECT}') TO 's3://{BUCKET}/{prefix}/' IAM_ROLE default CSV GZIP PARALLEL OFF"
        )
        seconds = time.perf_counter() - started
        cur.execute("select pg_last_unload_count()")
        rows = cur.fetchone()[0]  # type: ignore[index]
    conn.close()
    return rows, seconds


def run_floor(cluster: PostgresCluster, s3_endpoint: str, workdir: Path) -> float:
    target = workdir / "floor.csv.gz"
    env = {**os.environ, "PGPASSWORD": cluster.password}
    dsn = f"host=127.0.0.1 port={cluster.port} dbname={cluster.database} user={cluster.user}"
    started = time.perf_counter()
    with target.open("wb") as out:
        psql = subprocess.Popen(
            ["psql", dsn, "-c", f"\\copy ({SELECT}) to stdout csv"], stdout=subprocess.PIPE, env=env
        )
        subprocess.run(["gzip", "-c"], stdin=psql.stdout, stdout=out, check=True)
        assert psql.wait() == 0
    s3_client(s3_endpoint).upload_file(str(target), BUCKET, "floor/floor.csv.gz")
    return time.perf_counter() - started


def measure(cluster: PostgresCluster, s3_endpoint: str, workdir: Path, rows: int, with_floor: bool) -> dict:
    seed_demo_data(cluster.dsn(), rows=rows)
    emulator, port = start_emulator(cluster, s3_endpoint)
    try:
        unloaded, emu_seconds = run_emulator(cluster, port, f"emu-{rows}")
        rss = peak_rss_mb(emulator.pid)
        copy_seconds = run_copy(cluster, port, f"emu-{rows}")
        copy_rss = peak_rss_mb(emulator.pid)
    finally:
        emulator.terminate()
        emulator.wait()
    result = {
        "rows": unloaded,
        "emu_s": emu_seconds,
        "rss_mb": rss,
        "copy_s": copy_seconds,
        "copy_rss_mb": copy_rss,
    }
    if with_floor:
        result["floor_s"] = run_floor(cluster, s3_endpoint, workdir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-rows", type=int, default=0, help="also measure peak RSS at this many rows")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-emulator-"))
    workdir.chmod(0o755)
    s3_port = free_port()
    moto = start_moto(s3_port)
    endpoint = f"http://127.0.0.1:{s3_port}"
    cluster = PostgresCluster(workdir / "pgdata").start()
    try:
        main_run = measure(cluster, endpoint, workdir, args.rows, with_floor=True)
        big = measure(cluster, endpoint, workdir, args.rss_rows, with_floor=False) if args.rss_rows else None
    finally:
        cluster.stop()
        moto.terminate()
        shutil.rmtree(workdir, ignore_errors=True)
    emu_rate = main_run["rows"] / main_run["emu_s"]
    floor_rate = main_run["rows"] / main_run["floor_s"]
    print(f"{'method':<34} {'rows':>11} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9}")
    print(
        f"{'emulator UNLOAD CSV GZIP PAR OFF':<34} {main_run['rows']:>11,} {main_run['emu_s']:>8.2f} "
        f"{emu_rate:>10,.0f} {main_run['rss_mb']:>7.0f}MB"
    )
    print(
        f"{'floor psql | gzip + boto3 upload':<34} {main_run['rows']:>11,} {main_run['floor_s']:>8.2f} "
        f"{floor_rate:>10,.0f}"
    )
    print(f"ratio emulator/floor throughput: {emu_rate / floor_rate:.2f}x (target >= 1.0x)")
    print(
        f"{'emulator COPY back CSV GZIP':<34} {main_run['rows']:>11,} {main_run['copy_s']:>8.2f} "
        f"{main_run['rows'] / main_run['copy_s']:>10,.0f} {main_run['copy_rss_mb']:>7.0f}MB"
    )
    if big:
        label = f"emulator at {big['rows']:,} rows"
        print(
            f"{label:<34} {big['rows']:>11,} {big['emu_s']:>8.2f} "
            f"{big['rows'] / big['emu_s']:>10,.0f} {big['rss_mb']:>7.0f}MB (target < 200 MB)"
        )
        label = f"COPY back at {big['rows']:,} rows"
        print(
            f"{label:<34} {big['rows']:>11,} {big['copy_s']:>8.2f} "
            f"{big['rows'] / big['copy_s']:>10,.0f} {big['copy_rss_mb']:>7.0f}MB (peak after the COPY)"
        )


if __name__ == "__main__":
    main()
