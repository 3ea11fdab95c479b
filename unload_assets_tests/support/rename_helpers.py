"""Helpers for the rename tests: stage files in S3 exactly as Redshift UNLOAD lays them out, watch calls.

Kept in a test module (no tests of its own) so the rename_unload/crash test modules can share it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

from unload_assets.rename.lock import lock_key_for
from unload_assets.rename.step import RenameRequest, RenameResult, rename_unload

MiB = 1024 * 1024
SUFFIX = {None: "", "gzip": ".gz", "bzip2": ".bz2", "zstd": ".zst"}


@dataclass
class Staged:
    prefix: str
    manifest_key: str
    keys: list[str]


def new_prefix(target: str = "sales") -> str:
    return f"_staging/{target}/2026-11-22/{uuid.uuid4().hex}/"


def stage(
    s3: Any,
    bucket: str,
    bodies: Sequence[bytes],
    *,
    prefix: str | None = None,
    parallel: bool = True,
    suffix: str = "",
    verbose: bool = False,
) -> Staged:
    """Put `bodies` where UNLOAD ... TO 's3://bucket/<prefix>' MANIFEST [VERBOSE] would write them."""
    prefix = prefix or new_prefix()
    keys = [
        f"{prefix}{i:04d}_part_00{suffix}" if parallel else f"{prefix}{i:03d}{suffix}"
        for i in range(len(bodies))
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda kb: s3.put_object(Bucket=bucket, Key=kb[0], Body=kb[1]), zip(keys, bodies, strict=True)
            )
        )
    entries: list[dict[str, Any]] = []
    for key, body in zip(keys, bodies, strict=True):
        meta: dict[str, Any] = {"content_length": len(body)}
        if verbose:
            meta["record_count"] = body.count(b"\n")
        entries.append({"url": f"s3://{bucket}/{key}", "meta": meta})
    doc: dict[str, Any] = {"entries": entries}
    if verbose:
        doc["schema"] = {
            "elements": [
                {"name": "id", "type": {"base": "integer"}},
                {"name": "n", "type": {"base": "character varying", "max_length": 60}},
            ]
        }
        doc["meta"] = {
            "content_length": sum(len(b) for b in bodies),
            "record_count": sum(b.count(b"\n") for b in bodies),
        }
        doc["author"] = {"name": "Amazon Redshift", "version": "1.0.0"}
    manifest_key = prefix + "manifest"
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(doc).encode())
    return Staged(prefix, manifest_key, keys)


REQUEST_FIELDS = {f.name for f in fields(RenameRequest)}


def run(s3: Any, bucket: str, staged: Staged, final_key: str, **kw: Any) -> RenameResult:
    """Rename `staged` to `final_key`: `kw` holds RenameRequest fields (format, header, ...; csv,
    combine, uncompressed, no header by default) and rename_unload's knobs (sizes, workers, lease, pause)."""
    asked = {"on_split": "combine", "fmt": "csv", "compression": None, "header": False}
    asked.update({k: v for k, v in kw.items() if k in REQUEST_FIELDS})
    knobs = {k: v for k, v in kw.items() if k not in REQUEST_FIELDS}
    request = RenameRequest(
        bucket=bucket,
        staging_prefix=staged.prefix,
        manifest_key=staged.manifest_key,
        final_key=final_key,
        lock_key=lock_key_for("_staging", final_key),
        **asked,
    )
    return rename_unload(s3, request, **knobs)


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def body(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def csv_rows(start: int, count: int, width: int = 0) -> bytes:
    pad = "x" * width
    return "".join(f"{i},name {i}{pad}\n" for i in range(start, start + count)).encode()


def sized(size: int, seed: int) -> bytes:
    """Newline-terminated text of exactly `size` bytes (cheap to build at 5+ MiB)."""
    line = (f"{seed:08d}," + "y" * 90 + "\n").encode()
    reps, rest = divmod(size, len(line))
    tail = (b"z" * (rest - 1) + b"\n") if rest else b""
    return line * reps + tail


class Crash(Exception):
    """Stands in for the process dying (raised before the call reaches the server)."""


@dataclass
class CallWatch:
    """Records every S3 API call a client makes; optionally 'crashes' before the N-th one."""

    crash_at: int | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def attach(self, s3: Any) -> Any:
        s3.meta.events.register("before-parameter-build.s3", self._seen)
        return s3

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.crash_at is not None and len(self.calls) >= self.crash_at:
            raise Crash(f"crash before call #{len(self.calls)} ({model.name})")
        self.calls.append((model.name, dict(params)))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]
