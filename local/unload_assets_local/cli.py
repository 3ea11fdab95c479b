"""`unload-assets-local up`: start the local stack, write `.env`, and run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from unload_assets_local.postgres import PostgresNotFound, remove_cluster
from unload_assets_local.stack import LocalStack, StackConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unload-assets-local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start PostgreSQL, the Redshift emulator, S3 and the Slack stand-in")
    up.add_argument("--dir", type=Path, default=Path(".local-stack"), help="state directory")
    up.add_argument("--env-file", type=Path, default=Path(".env"), help="where to write the variables")
    up.add_argument("--rows", type=int, default=100_000, help="demo rows in public.sales")
    up.add_argument("--days", type=int, default=30, help="days of demo sales, ending yesterday")
    up.add_argument("--no-seed", action="store_true", help="keep the tables as they are")
    up.add_argument("--slices", type=int, default=4, help="emulated slices for PARALLEL ON")
    up.add_argument("--redshift-port", type=int, default=5439, help="0 picks a free port")
    up.add_argument("--pg-port", type=int, default=0)
    up.add_argument("--s3-port", type=int, default=0)
    up.add_argument("--slack-port", type=int, default=0)
    up.add_argument("--bucket", default="unload-local")
    up.add_argument("--webserver-url", default="http://127.0.0.1:3000", help="for links in Slack messages")
    clean = sub.add_parser("clean", help="stop and delete the stack's PostgreSQL data, wherever it lives")
    clean.add_argument("--dir", type=Path, default=Path(".local-stack"), help="state directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "clean":
        removed = remove_cluster(args.dir.absolute() / "pgdata")
        print(
            f"unload-assets-local: removed {removed}" if removed else "unload-assets-local: nothing to remove"
        )
        return 0
    config = StackConfig(
        workdir=args.dir.absolute(),
        pg_port=args.pg_port,
        redshift_port=args.redshift_port,
        s3_port=args.s3_port,
        slack_port=args.slack_port,
        bucket=args.bucket,
        rows=args.rows,
        days=args.days,
        seed=not args.no_seed,
        slices=args.slices,
        webserver_url=args.webserver_url,
    )
    stop = threading.Event()
    # SIGTERM (make, systemd, CI) stops as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stack = LocalStack(config).start()
    except (PostgresNotFound, PermissionError, OSError, RuntimeError) as exc:
        print(f"unload-assets-local: {exc}", file=sys.stderr)
        return 1
    try:
        stack.write_env_file(args.env_file)
        print(stack.describe())
        if stack.seed_summary:
            print(f"Demo data        {stack.seed_summary}")
        print(f"Variables        written to {args.env_file.absolute()}")
        print("Ready. Ctrl-C stops everything.", flush=True)
        (config.workdir / "ready").write_text("ready\n")
        while not stop.wait(0.5):
            pass
    finally:
        (config.workdir / "ready").unlink(missing_ok=True)
        stack.stop()
        print("Local stack stopped.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
