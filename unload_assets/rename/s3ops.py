"""The S3 calls behind the rename: heads, ranged reads, listings, batch deletes (writes: `multipart.py`).

Every byte of object data that passes through this process is counted in a `Traffic`, so the rename
can report (and the benchmark can check) how much it downloaded and uploaded. The small manifests'
JSON is not counted: the figure is about data that could have stayed server-side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

DELETE_BATCH = 1000  # DeleteObjects limit
_PROBE = 4096  # first read when looking for a header line; grown 4x until a newline shows up


class Traffic:
    """Bytes downloaded plus uploaded by this client (thread-safe: parts are built in parallel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n


# What S3 (and moto, MinIO) answer for a key that is not there: GetObject, HeadObject (no body: the status).
NOT_FOUND = ("NoSuchKey", "NotFound", "404")
# A conditional request refused: 412, or 409 when a concurrent conditional write to the key won.
CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class Changed(Exception):
    """S3 refused a conditional delete of `key` in a DeleteObjects batch: it is not as this client saw it."""

    def __init__(self, key: str, code: str) -> None:
        super().__init__(f"{key}: {code}")
        self.key, self.code = key, code


def head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HeadObject, or None when the object does not exist."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
            return None
        raise


def read_range(s3: Any, bucket: str, key: str, start: int, end: int, traffic: Traffic) -> bytes:
    """Bytes [start, end) of an object."""
    if end <= start:
        return b""
    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"].read()
    traffic.add(len(body))
    if len(body) != end - start:
        raise OSError(f"s3://{bucket}/{key}: asked for bytes {start}..{end - 1}, got {len(body)} bytes")
    return bytes(body)


def first_line_length(s3: Any, bucket: str, key: str, size: int, traffic: Traffic) -> tuple[int, bytes]:
    """Length (incl. the newline) and bytes of the first line, read with small ranged GETs."""
    probe = _PROBE
    while True:
        head_bytes = read_range(s3, bucket, key, 0, min(probe, size), traffic)
        newline = head_bytes.find(b"\n")
        if newline >= 0:
            return newline + 1, head_bytes[: newline + 1]
        if len(head_bytes) >= size:
            return size, head_bytes  # a header with no newline is the whole piece
        probe *= 4


def run_jobs(jobs: Sequence[Callable[[], Any]], workers: int) -> list[Any]:
    if workers <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]  # deterministic call order (the crash tests rely on it)
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(lambda job: job(), jobs))


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


def list_etags(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """Key -> ETag of every object under `prefix`."""
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update((obj["Key"], obj["ETag"]) for obj in page.get("Contents", []))
    return found


def delete_keys(
    s3: Any,
    bucket: str,
    keys: Iterable[str],
    *,
    batch: int = DELETE_BATCH,
    etags: Mapping[str, str] | None = None,
    before: Callable[[], None] = lambda: None,
) -> int:
    """DeleteObjects in batches of <= 1000; raises if S3 reports any key it could not delete.

    With `etags`, each object is deleted only if its ETag is still that one: a key already gone counts
    as deleted, a key that changed raises `Changed`. `before` runs before each batch.
    """
    todo = list(dict.fromkeys(keys))
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        conditional = etags is not None
        objects = [{"Key": k, "ETag": etags[k]} if etags is not None else {"Key": k} for k in chunk]
        before()
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        errors = [e for e in resp.get("Errors") or [] if not (conditional and e.get("Code") in NOT_FOUND)]
        changed = [e for e in errors if conditional and e.get("Code") in CONFLICT]
        if changed:
            raise Changed(str(changed[0].get("Key")), str(changed[0].get("Code")))
        if errors:
            sample = ", ".join(
                f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in errors[:5]
            )
            raise OSError(
                f"could not delete {len(errors)} of {len(chunk)} objects in s3://{bucket} ({sample})"
            )
    return len(todo)
