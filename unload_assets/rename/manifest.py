"""Redshift manifests: reading the one UNLOAD writes, writing the one `COPY ... MANIFEST` reads.

UNLOAD's manifest is the only trustworthy list of what a run staged: the prefix may also hold leftovers
of an earlier attempt (ALLOWOVERWRITE keeps stale parts), so nothing here ever lists the prefix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from unload_assets.rename.s3ops import NOT_FOUND
from unload_assets.s3_naming import parse_s3_uri, s3_url


@dataclass(frozen=True)
class StagedFile:
    key: str
    size: int
    record_count: int | None


@dataclass(frozen=True)
class UnloadManifest:
    entries: list[StagedFile]
    record_count: int | None
    content_length: int | None
    schema: dict | None


class ManifestError(ValueError):
    """The manifest exists but is not what UNLOAD writes."""


class ManifestNotFound(FileNotFoundError):
    pass


def split_s3_url(url: str) -> tuple[str, str]:
    bucket, key = parse_s3_uri(url)
    if not bucket or not key:
        raise ManifestError(f"not an s3:// object URL: {url!r}")
    return bucket, key


def _optional_int(meta: dict[str, Any], name: str, where: str) -> int | None:
    value = meta.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{where}: meta.{name} must be a non-negative integer, got {value!r}")
    return value


def parse_unload_manifest(text: str | bytes, *, bucket: str, where: str = "manifest") -> list[dict[str, Any]]:
    """Validated raw entries `{"key", "size" (None if absent), "record_count"}` plus nothing else.

    Split out from `read_manifest` so the pure part is testable without S3; see `read_manifest`.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise ManifestError(f'{where} has no "entries" list; is it an UNLOAD manifest?')
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(doc["entries"]):
        at = f"{where} entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ManifestError(f'{at} has no "url"')
        entry_bucket, key = split_s3_url(entry["url"])
        if entry_bucket != bucket:
            # The staged files are copied and then deleted: never touch another bucket because a file said so.
            raise ManifestError(f"{at} points into bucket {entry_bucket!r}, expected {bucket!r}")
        meta = entry.get("meta") or {}
        if not isinstance(meta, dict):
            raise ManifestError(f'{at}: "meta" must be an object')
        out.append(
            {
                "key": key,
                "size": _optional_int(meta, "content_length", at),
                # VERBOSE puts record_count in meta; accept it at entry level too (seen in the wild).
                "record_count": _optional_int(meta, "record_count", at)
                if "record_count" in meta
                else _optional_int(entry, "record_count", at),
            }
        )
    keys = [e["key"] for e in out]
    if len(set(keys)) != len(keys):
        raise ManifestError(f"{where} lists the same object twice")
    return out


def _top_level(text: str | bytes) -> tuple[int | None, int | None, dict | None]:
    doc = json.loads(text)
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    schema = doc.get("schema") if isinstance(doc.get("schema"), dict) else None
    return (
        _optional_int(meta, "record_count", "manifest"),
        _optional_int(meta, "content_length", "manifest"),
        schema,
    )


def read_manifest(s3: Any, bucket: str, manifest_key: str) -> UnloadManifest:
    """The UNLOAD manifest at `s3://bucket/manifest_key`.

    Plain manifests carry each entry's `content_length`; where it is missing the object is HEADed, because
    the combine plan needs exact sizes. Raises `ManifestNotFound` if there is no such object.
    """
    where = s3_url(bucket, manifest_key)
    try:
        text = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
            raise ManifestNotFound(f"no UNLOAD manifest at {where}") from exc
        raise
    entries = []
    for raw in parse_unload_manifest(text, bucket=bucket, where=where):
        size = raw["size"]
        if size is None:
            size = int(s3.head_object(Bucket=bucket, Key=raw["key"])["ContentLength"])
        entries.append(StagedFile(key=raw["key"], size=size, record_count=raw["record_count"]))
    record_count, content_length, schema = _top_level(text)
    return UnloadManifest(
        entries=entries, record_count=record_count, content_length=content_length, schema=schema
    )


def render_copy_manifest(bucket: str, objects: Sequence[tuple[str, int]]) -> bytes:
    """A manifest `COPY ... MANIFEST` loads: every part mandatory, with its length (required for Parquet)."""
    entries = [
        {"url": s3_url(bucket, key), "mandatory": True, "meta": {"content_length": size}}
        for key, size in objects
    ]
    return json.dumps({"entries": entries}, indent=1).encode() + b"\n"


def parse_copy_manifest(text: str | bytes, *, bucket: str) -> list[tuple[str, int | None]]:
    """`(key, content_length)` of a manifest written by `render_copy_manifest`."""
    return [(e["key"], e["size"]) for e in parse_unload_manifest(text, bucket=bucket, where="copy manifest")]
