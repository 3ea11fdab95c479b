"""Writing one object in S3 from many sources: multipart uploads, and server-side copies of any size.

Both take a `before` callback, run right before the request that makes the object visible, and a
`condition` (If-Match / If-None-Match) that request carries: that is where `fence.py` fences them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from unload_assets.rename.combine import MAX_PART, PartSpec, Segment, plan_copy
from unload_assets.rename.s3ops import Traffic, read_range, run_jobs

MAX_COPY_OBJECT = 5 * 1024**3  # CopyObject refuses sources above 5 GiB


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
    condition: Mapping[str, str] | None = None,
    before: Callable[[], None] = lambda: None,
    write_args: Mapping[str, Any] | None = None,
) -> None:
    """Assemble `dest_key` from `plan` (segment piece i = `sources[i]`: an object key, or bytes the client
    already holds). An empty plan writes an empty object.

    `before` runs right before the request that makes the object visible (CompleteMultipartUpload, or
    the empty PutObject), which carries `condition` (If-Match / If-None-Match).
    On any error the upload is aborted, so no invisible half-upload keeps costing storage; a crashed
    process leaves one behind, which the bucket's AbortIncompleteMultipartUpload lifecycle rule removes.
    Once completed, any other unfinished upload of `dest_key` is aborted (`abort_strays`).
    `write_args`: the encryption every write asks for (`Encryption.write_args`), on the PutObject or the
    CreateMultipartUpload (the parts of an upload inherit it).
    """
    cond, extra = dict(condition or {}), dict(write_args or {})
    if not plan:
        before()
        s3.put_object(
            Bucket=bucket,
            Key=dest_key,
            Body=b"",
            Metadata=dict(metadata),
            ContentType=content_type,
            **extra,
            **cond,
        )
        return
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=dest_key, Metadata=dict(metadata), ContentType=content_type, **extra
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
        before()
        s3.complete_multipart_upload(**common, MultipartUpload={"Parts": parts}, **cond)
        # Completed under the fence and the condition: the lock was ours, so any other upload of this
        # key is a stray (after, not before: a holder that lost the lock never gets here to abort).
        abort_strays(s3, bucket, dest_key, keep=upload_id)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is the one to report
            s3.abort_multipart_upload(**common)
        raise


def abort_strays(s3: Any, bucket: str, key: str, *, keep: str) -> int:
    """Abort every unfinished multipart upload of `key` except `keep`; returns how many.

    A CreateMultipartUpload whose answer was lost (a reset after S3 acted, an answer cut short) is
    retried by boto3, and the first upload, whose id this process never saw, stays open and billed; so
    does one of an attempt that crashed. Only the holder of the key's rename lock writes the key, so any
    other upload of it is such a stray. Best effort: the lifecycle rule stays the backstop."""
    aborted = 0
    with contextlib.suppress(ClientError, BotoCoreError):
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload["Key"] != key or upload["UploadId"] == keep:
                    continue
                with contextlib.suppress(ClientError, BotoCoreError):
                    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                    aborted += 1
    return aborted


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
    condition: Mapping[str, str] | None = None,
    before: Callable[[], None] = lambda: None,
    write_args: Mapping[str, Any] | None = None,
) -> None:
    """Server-side copy: CopyObject up to `max_copy_size`, UploadPartCopy ranges above it.

    UNLOAD writes files of up to 6.2 GB, and CopyObject refuses sources above 5 GiB. `before` and
    `condition` and `write_args` as in `write_multipart`.
    """
    if source_size <= max_copy_size:
        before()
        s3.copy_object(
            Bucket=bucket,
            Key=dest_key,
            CopySource={"Bucket": bucket, "Key": source_key},
            MetadataDirective="REPLACE",
            Metadata=dict(metadata),
            ContentType=content_type,
            **dict(write_args or {}),
            **dict(condition or {}),
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
        condition=condition,
        before=before,
        write_args=write_args,
    )
