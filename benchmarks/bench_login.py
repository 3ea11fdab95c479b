"""What a login costs, per connection, in each way the resource can connect (run by hand).

Starts the local stack in its own process group, then opens N connections (and runs `select 1`) through
`RedshiftUnloadResource.connect()` for: a password without TLS, a password over TLS with the certificate
checked (`verify-full`, what `.env` uses), and IAM temporary credentials from `get_cluster_credentials`
and Serverless `get_credentials`, once cached (the normal case: one mint per credential lifetime) and
once minted for every connection (the cache cleared each time: the worst case, a fresh step process).

    .venv/bin/python benchmarks/bench_login.py [--connections 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from stack_process import start_stack, stop_stack

from unload_assets.component import this_project
from unload_assets.resources.redshift_auth import CREDENTIALS


def measure(env: dict[str, str], connections: int, *, fresh_credentials: bool) -> tuple[float, float]:
    os.environ.update(env)  # this project's defs.yaml reads them; EnvVar fields resolve from them
    resource = this_project().redshift.process_config_and_initialize()
    CREDENTIALS.clear()
    times = []
    for _ in range(connections):
        if fresh_credentials:
            CREDENTIALS.clear()
        started = time.perf_counter()
        conn = resource.connect()
        with conn.cursor() as cur:
            cur.execute("select 1")
            cur.fetchone()
        conn.close()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, statistics.quantiles(times, n=20)[-1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, stack_env = start_stack(Path(tmp), rows=1000)
        try:
            cases = [
                ("password, sslmode=disable", {"REDSHIFT_SSLMODE": "disable"}, False),
                ("password, sslmode=verify-full", {}, False),
                ("iam (cached), verify-full", {"REDSHIFT_AUTH": "iam"}, False),
                ("iam (minted each time), verify-full", {"REDSHIFT_AUTH": "iam"}, True),
                ("serverless (cached), verify-full", {"REDSHIFT_AUTH": "serverless"}, False),
                ("serverless (minted each time), verify-full", {"REDSHIFT_AUTH": "serverless"}, True),
            ]
            print(f"{args.connections} connections each (connect + select 1 + close), milliseconds")
            print(f"{'case':45} {'median':>8} {'p95':>8}")
            for name, extra, fresh in cases:
                median, p95 = measure({**stack_env, **extra}, args.connections, fresh_credentials=fresh)
                print(f"{name:45} {median:8.2f} {p95:8.2f}")
        finally:
            stop_stack(proc)


if __name__ == "__main__":
    main()
