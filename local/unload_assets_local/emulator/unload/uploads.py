"""Streaming one UNLOAD's objects to S3, and taking them all back if the UNLOAD fails.

Each data file is a multipart upload fed part by part as the rows arrive (a file that stays under one
part is a single PUT). `S3Target` remembers every upload still open and every object completed, so a
failure or a vanished client can abort the former and delete the latter: a failed UNLOAD leaves
nothing behind, and the manifest, written last, only ever describes a complete unload.

All methods block (boto3 is synchronous); the executor calls them from worker threads.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Executor, Future
from typing import Any

from unload_assets_local.emulator.unload.command import UnloadCommand, UnloadError

PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
NOT_EMPTY = (
    "Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, "
    "manually removing the target files in S3, or using the ALLOWOVERWRITE option."
)


def put_args(cmd: UnloadCommand) -> dict[str, str]:
    """Encryption arguments for every object the UNLOAD writes (the manifest too)."""
    if cmd.kms_key_id:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": cmd.kms_key_id}
    if cmd.encrypted:
        return {"ServerSideEncryption": "AES256"}
    return {}


def s3_message(exc: Exception) -> str:
    """An S3 failure as Redshift words it (SQLSTATE XX000): `S3ServiceException:<message>,Status <http
    status>,Error <code>,Rid <request id>`. Throttling (503 SlowDown) reads the same way, which is how a
    client tells it from a statement's own error."""
    response = getattr(exc, "response", None) or {}
    error, meta = response.get("Error", {}), response.get("ResponseMetadata", {})
    code, text = error.get("Code"), error.get("Message") or str(exc)
    if not code:
        return f"S3ServiceException:{exc}"
    status, rid = meta.get("HTTPStatusCode", "?"), meta.get("RequestId", "")
    return f"S3ServiceException:{text},Status {status},Error {code},Rid {rid}"


class S3Target:
    def __init__(self, client: Any, bucket: str, extra: dict[str, str], io_pool: Executor) -> None:
        self.client = client
        self.bucket = bucket
        self.extra = extra
        self.io_pool = io_pool
        self._lock = threading.Lock()
        self._open: dict[str, ObjectStream] = {}  # multipart uploads not yet completed
        self._done: list[str] = []

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def open(self, key: str) -> ObjectStream:
        return ObjectStream(self, key)

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **self.extra)
        self._completed(key)

    def delete(self, key: str) -> None:
        """Delete `key` if this UNLOAD wrote it (best effort, as the rest of the cleanup)."""
        with self._lock:
            if key in self._done:
                self._done.remove(key)
        with contextlib.suppress(Exception):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def check_empty(self, prefix: str) -> None:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        if listing.get("KeyCount", 0):
            raise UnloadError(NOT_EMPTY)

    def clean(self, prefix: str) -> None:
        """Delete every object under `prefix` (CLEANPATH)."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:  # a page holds at most 1000 keys, DeleteObjects' limit
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def abort_all(self, *, keep_completed: bool = False) -> None:
        """Abort open uploads and delete what this UNLOAD completed. Best effort: keeps going on errors."""
        with self._lock:
            uploads, self._open = dict(self._open), {}
            done, self._done = ([] if keep_completed else list(self._done)), []
        # Cleanup must try every upload and object, whatever fails on the way.
        for key, stream in uploads.items():
            with contextlib.suppress(Exception):
                stream.settle()  # a part still in flight would land after the abort
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=stream.upload_id)
        for start in range(0, len(done), 1000):
            batch = [{"Key": key} for key in done[start : start + 1000]]
            with contextlib.suppress(Exception):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _started(self, stream: ObjectStream) -> None:
        with self._lock:
            self._open[stream.key] = stream

    def _completed(self, key: str) -> None:
        with self._lock:
            self._open.pop(key, None)
            self._done.append(key)


class ObjectStream:
    """One object written front to back; at most one part is in flight while the next one fills."""

    def __init__(self, target: S3Target, key: str) -> None:
        self.target = target
        self.key = key
        self.size = 0
        self._buf = bytearray()
        self.upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._inflight: Future | None = None

    def write(self, data: bytes) -> None:
        self._buf += data
        self.size += len(data)
        if len(self._buf) >= PART_SIZE:
            self._send_part()

    def close(self) -> int:
        """Finish the object; its size in bytes."""
        target = self.target
        if self.upload_id is None:
            target.client.put_object(Bucket=target.bucket, Key=self.key, Body=self._buf, **target.extra)
        else:
            if self._buf:
                self._send_part()
            self._wait()
            target.client.complete_multipart_upload(
                Bucket=target.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buf = bytearray()
        target._completed(self.key)
        return self.size

    def _send_part(self) -> None:
        target = self.target
        if self.upload_id is None:
            created = target.client.create_multipart_upload(
                Bucket=target.bucket, Key=self.key, **target.extra
            )
            self.upload_id = created["UploadId"]
            target._started(self)
        self._wait()
        body, self._buf = self._buf, bytearray()  # handed over whole: no copy of the part
        number = len(self._parts) + 1
        self._inflight = target.io_pool.submit(
            target.client.upload_part,
            Bucket=target.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"PartNumber": number})

    def settle(self) -> None:
        """Wait for the part in flight, if any (its failure is raised here)."""
        self._wait()

    def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            self._parts[-1]["ETag"] = inflight.result()["ETag"]
