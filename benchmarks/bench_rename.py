"""Benchmark the rename: our `rename_unload` (combine) vs the old `aws s3 cp` + `aws s3 rm` loop vs the floor.

Run by hand: `.venv/bin/python benchmarks/bench_rename.py [--reps N]`. It starts its own moto server as a
separate process on loopback (so server work does not share this process's GIL with the client under
test), stages K files of S MiB the way UNLOAD lays them out, and times only the rename:

- rename_unload: `unload_assets.rename.step.rename_unload(on_split="combine")`, 8 workers and 1 worker;
- old way: per staged file `aws s3 cp` then `aws s3 rm` subprocesses, as the Airflow DAG did
  (it leaves K objects rather than one, and checks nothing);
- floor: the fewest raw boto3 calls giving rename_unload's result: CreateMultipartUpload, K UploadPartCopy,
  CompleteMultipartUpload, one DeleteObjects (no manifest read, no verification, no stale cleanup).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unload_assets_local.postgres import free_port  # noqa: E402
from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION  # noqa: E402

from unload_assets.encryption import Encryption  # noqa: E402
from unload_assets.rename.lock import lock_key_for  # noqa: E402
from unload_assets.rename.step import RenameRequest, rename_unload  # noqa: E402

MiB = 1024 * 1024
BUCKET = "bench-rename"
BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": LOCAL_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET,
    "AWS_DEFAULT_REGION": REGION,
}


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    s3 = client(url)
    for _ in range(100):
        try:
            s3.create_bucket(Bucket=BUCKET)
            return proc, url
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=LOCAL_KEY_ID,
        aws_secret_access_key=LOCAL_SECRET,
        region_name=REGION,
    )


def stage(s3: Any, count: int, size: int) -> tuple[str, list[str]]:
    prefix = f"_staging/bench/2026-11-22/{uuid.uuid4().hex}/"
    line = b"1234567|some text field|2026-11-22 09:00:00|42.00\n"
    data = (line * (size // len(line) + 1))[: size - 1] + b"\n"
    keys = [f"{prefix}{i:04d}_part_00" for i in range(count)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    entries = [{"url": f"s3://{BUCKET}/{k}", "meta": {"content_length": size}} for k in keys]
    s3.put_object(Bucket=BUCKET, Key=prefix + "manifest", Body=json.dumps({"entries": entries}).encode())
    return prefix, keys


def run_rename(s3: Any, prefix: str, keys: list[str], workers: int, encryption: Encryption) -> int:
    final_key = f"exports/{prefix[-9:]}sales.txt"
    request = RenameRequest(
        bucket=BUCKET,
        staging_prefix=prefix,
        manifest_key=prefix + "manifest",
        final_key=final_key,
        lock_key=lock_key_for("_staging", final_key),
        on_split="combine",
        fmt="text",
        compression=None,
        header=False,
        encryption=encryption,
    )
    result = rename_unload(s3, request, workers=workers)
    assert result.mode == "combine" and result.staging_cleaned
    return result.client_bytes


def run_old_way(url: str, prefix: str, keys: list[str]) -> int:
    for i, key in enumerate(keys):
        final = f"s3://{BUCKET}/exports/{prefix[-9:]}sales_{i:03d}.txt"
        for args in (["cp", f"s3://{BUCKET}/{key}", final], ["rm", f"s3://{BUCKET}/{key}"]):
            subprocess.run(
                [str(BIN / "aws"), "s3", *args, "--endpoint-url", url, "--only-show-errors"],
                env=ENV,
                check=True,
            )
    return 0  # s3-to-s3 `aws s3 cp` is a server-side copy


def run_floor(s3: Any, prefix: str, keys: list[str]) -> int:
    final = f"exports/{prefix[-9:]}sales.txt"
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=final)["UploadId"]
    parts = []
    for n, key in enumerate(keys, start=1):
        copy = s3.upload_part_copy(
            Bucket=BUCKET, Key=final, UploadId=upload, PartNumber=n, CopySource={"Bucket": BUCKET, "Key": key}
        )
        parts.append({"PartNumber": n, "ETag": copy["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket=BUCKET, Key=final, UploadId=upload, MultipartUpload={"Parts": parts})
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in [*keys, prefix + "manifest"]]})
    return 0


def measure(
    s3: Any, count: int, size: int, reps: int, fn: Callable[[str, list[str]], int]
) -> tuple[float, int]:
    times, moved = [], 0
    for _ in range(reps):
        prefix, keys = stage(s3, count, size)
        started = time.perf_counter()
        moved = fn(prefix, keys)
        times.append(time.perf_counter() - started)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="exports/"):
            if page.get("Contents"):  # keep the server's memory flat between repetitions
                s3.delete_objects(
                    Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in page["Contents"]]}
                )
    return statistics.median(times), moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per cell (median is shown)")
    parser.add_argument("--kms-key-id", default="", help="SSE-KMS: every write of the rename with this key")
    args = parser.parse_args()
    encryption = Encryption(args.kms_key_id or None)
    proc, url = start_server()
    try:
        s3 = client(url)
        methods: dict[str, Callable[[str, list[str]], int]] = {
            "rename_unload (8 workers)": lambda p, k: run_rename(s3, p, k, 8, encryption),
            "rename_unload (1 worker)": lambda p, k: run_rename(s3, p, k, 1, encryption),
            "old: aws s3 cp + rm": lambda p, k: run_old_way(url, p, k),
            "floor: raw boto3": lambda p, k: run_floor(s3, p, k),
        }
        print(f"{'staged files':<14}{'method':<24}{'wall s':>9}{'vs floor':>10}{'client bytes':>14}")
        for count, size in ((20, 8 * MiB), (3, 64 * MiB)):
            rows = {name: measure(s3, count, size, args.reps, fn) for name, fn in methods.items()}
            floor = rows["floor: raw boto3"][0]
            for name, (seconds, moved) in rows.items():
                label = f"{count} x {size // MiB} MiB"
                print(f"{label:<14}{name:<24}{seconds:>9.3f}{seconds / floor:>9.2f}x{moved:>14,}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
