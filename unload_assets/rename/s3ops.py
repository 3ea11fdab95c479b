"""The S3 calls behind the rename: server-side copies of any size, combining, ranged reads, batch deletes.

Every byte of object data that passes through this process is counted in a `Traffic`, so the rename
can report (and the benchmark can check) how much it downloaded and uploaded. The small manifests'
JSON is not counted: the figure is about data that could have stayed server-side.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from unload_assets.rename.combine import MAX_PART, PartSpec, Segment, plan_copy

MAX_COPY_OBJECT = 5 * 1024**3  # CopyObject refuses sources above 5 GiB
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


def write_multipart(
    s3: Any,
    *,
    bucket: str,
    dest_key: str,
    sources: Sequence[str | bytes],
    plan: Sequence[PartSpec],
    metadata: Mapping[str, str],
    content_type: str,
    traffic: Traffic,
    workers: int = 8,
) -> None:
    """Assemble `dest_key` from `plan` (segment piece i = `sources[i]`: an object key, or bytes the client
    already holds). An empty plan writes an empty object.

    On any error the upload is aborted, so no invisible half-upload keeps costing storage; a crashed
    process leaves one behind, which the bucket's AbortIncompleteMultipartUpload lifecycle rule removes.
    """
    if not plan:
        s3.put_object(
            Bucket=bucket, Key=dest_key, Body=b"", Metadata=dict(metadata), ContentType=content_type
        )
        return
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=dest_key, Metadata=dict(metadata), ContentType=content_type
    )["UploadId"]
    common = {"Bucket": bucket, "Key": dest_key, "UploadId": upload_id}

    def part(number: int, spec: PartSpec) -> dict[str, Any]:
        if server_side(spec, sources):
            seg = spec.segments[0]
            resp = s3.upload_part_copy(
                **common,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": sources[seg.piece]},
                CopySourceRange=f"bytes={seg.start}-{seg.end - 1}",
            )
            return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}
        # Many tiny slice files are common (PARALLEL ON, few rows): fetch them concurrently.
        reads = [partial(_segment_bytes, s3, bucket, sources[s.piece], s, traffic) for s in spec.segments]
        body = b"".join(run_jobs(reads, workers))
        resp = s3.upload_part(**common, PartNumber=number, Body=body)
        traffic.add(len(body))
        return {"PartNumber": number, "ETag": resp["ETag"]}

    jobs = [partial(part, n, spec) for n, spec in enumerate(plan, start=1)]
    try:
        parts = run_jobs(jobs, workers)
        s3.complete_multipart_upload(**common, MultipartUpload={"Parts": parts})
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is the one to report
            s3.abort_multipart_upload(**common)
        raise


def server_side(spec: PartSpec, sources: Sequence[str | bytes]) -> bool:
    """Whether `write_multipart` copies this part inside S3 (one range of one staged object) rather than
    uploading bytes that passed through this client."""
    return spec.is_copy and isinstance(sources[spec.segments[0].piece], str)


def _segment_bytes(s3: Any, bucket: str, source: str | bytes, seg: Segment, traffic: Traffic) -> bytes:
    if isinstance(source, bytes):
        return source[seg.start : seg.end]
    return read_range(s3, bucket, source, seg.start, seg.end, traffic)


def copy_any_size(
    s3: Any,
    *,
    bucket: str,
    source_key: str,
    source_size: int,
    dest_key: str,
    metadata: Mapping[str, str],
    content_type: str,
    traffic: Traffic,
    max_copy_size: int = MAX_COPY_OBJECT,
    max_part_size: int = MAX_PART,
    workers: int = 8,
) -> None:
    """Server-side copy: CopyObject up to `max_copy_size`, UploadPartCopy ranges above it.

    UNLOAD writes files of up to 6.2 GB, and CopyObject refuses sources above 5 GiB.
    """
    if source_size <= max_copy_size:
        s3.copy_object(
            Bucket=bucket,
            Key=dest_key,
            CopySource={"Bucket": bucket, "Key": source_key},
            MetadataDirective="REPLACE",
            Metadata=dict(metadata),
            ContentType=content_type,
        )
        return
    write_multipart(
        s3,
        bucket=bucket,
        dest_key=dest_key,
        sources=[source_key],
        plan=plan_copy(source_size, max_part=max_part_size),
        metadata=metadata,
        content_type=content_type,
        traffic=traffic,
        workers=workers,
    )


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


def delete_keys(s3: Any, bucket: str, keys: Iterable[str], *, batch: int = DELETE_BATCH) -> int:
    """DeleteObjects in batches of <= 1000; raises if S3 reports any key it could not delete."""
    todo = list(dict.fromkeys(keys))
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        resp = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
        )
        errors = resp.get("Errors") or []
        if errors:
            sample = ", ".join(
                f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in errors[:5]
            )
            raise OSError(
                f"could not delete {len(errors)} of {len(chunk)} objects in s3://{bucket} ({sample})"
            )
    return len(todo)
