"""The delivery record: what one rename delivered for one target and one day.

The rename op writes it as the materialisation's metadata (`Delivery.to_metadata`); the checks, the run
reports and the Slack messages read it back (`Delivery.from_metadata`). The metadata keys are named here
and nowhere else, each constant after the field it holds, so a key cannot be written under one name and
read under another. Dagster's own keys where one says the same (`dagster/row_count`, `dagster/uri`).
Deliveries recorded before the keys were named after their fields still read (`_FORMERLY`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from unload_assets.rename import FinalObject
from unload_assets.s3_naming import MANIFEST_SUFFIX, parse_s3_uri, s3_url
from unload_assets.schema_change import SchemaChange

UNPARTITIONED = "unpartitioned"
FAILED_TARGETS = "failed_targets"  # metadata of the rename step's Failure: {target: {stage, error}}
# Dagster's standard keys: the catalog shows them.
ROWS = "dagster/row_count"
PARTITION_ROWS = "dagster/partition_row_count"
URI = "dagster/uri"  # the primary object: the final key, or the COPY manifest of the parts
COLUMNS = "dagster/column_schema"
# Ours, each named after its field.
TARGET = "target"
PARTITION = "partition"
FINAL_KEY = "final_key"
FINAL_OBJECTS = "final_objects"  # [{key, size}], what the checks verify
OBJECTS_TABLE = "s3_objects"  # the same as a table a person reads in the UI
BYTES = "bytes"
DELIVERED_AS = "delivered_as"
STAGED_FILES = "staged_files"
STAGING_URI = "staging_uri"
STAGING_CLEANED = "staging_cleaned"
UNLOAD_SECONDS = "unload_seconds"
RENAME_SECONDS = "rename_seconds"
CLIENT_BYTES = "client_bytes"
QUERY_ID = "query_id"
STATEMENT = "statement"
SCHEMA_CHANGE = "schema_change"  # one line: what changed since the previous delivery (absent: nothing)
SCHEMA_CHANGE_COLUMNS = "schema_change_columns"  # the same, every column, as JSON (what is read back)
_FORMERLY = {  # the keys deliveries were recorded under before, still read
    ROWS: "rows",
    URI: "s3_uri",
    DELIVERED_AS: "finalized_as",
    STAGING_URI: "staging_prefix",
    CLIENT_BYTES: "rename_client_bytes",
    QUERY_ID: "redshift_query_id",
}


@dataclass(frozen=True)
class Delivery:
    """One target's delivery of one partition."""

    target: str
    partition: str  # the day (ISO) or "unpartitioned"
    bucket: str
    primary_key: str  # what a reader opens: the final key, or the COPY manifest of the parts
    final_key: str = ""  # the target's key for this day, rendered once by the unload op
    objects: tuple[FinalObject, ...] = ()  # every final object, the parts' manifest included
    rows: int | None = None
    bytes: int | None = None  # data bytes (a parts manifest not counted)
    delivered_as: str = ""  # "single", "combine", "parts", "empty", + " (fell back: <why>)"
    staged_files: int = 0
    staging_uri: str = ""  # the run's staging folder, s3://...
    staging_cleaned: bool = False
    unload_seconds: float = 0.0
    rename_seconds: float = 0.0
    client_bytes: int = 0  # object data that passed through the worker (the rest was copied in S3)
    query_id: int = 0
    statement: str = ""  # redacted: no secret
    columns: dg.TableSchema | None = None  # from the UNLOAD manifest (MANIFEST VERBOSE)
    schema_change: SchemaChange | None = None  # against the target's previous delivery

    @property
    def uri(self) -> str:
        return s3_url(self.bucket, self.primary_key) if self.bucket and self.primary_key else ""

    @property
    def uris(self) -> tuple[str, ...]:
        """The primary URI first, then every other final object, without repeats."""
        others = [s3_url(self.bucket, obj.key) for obj in self.objects]
        return tuple(dict.fromkeys(u for u in [self.uri, *others] if u))

    @property
    def day(self) -> date | None:
        return None if self.partition == UNPARTITIONED else date.fromisoformat(self.partition)

    @property
    def in_parts(self) -> bool:
        return self.delivered_as.startswith("parts")

    @property
    def fallback_reason(self) -> str:
        """Why `combine` delivered parts instead ("" when it did not fall back)."""
        return self.delivered_as.partition("(fell back: ")[2].rstrip(")")

    def to_metadata(self) -> dict[str, dg.RawMetadataValue]:
        metadata: dict[str, dg.RawMetadataValue] = {
            ROWS: dg.MetadataValue.int(self.rows or 0),
            URI: self.uri,
        }
        if self.partition != UNPARTITIONED:
            metadata[PARTITION_ROWS] = dg.MetadataValue.int(self.rows or 0)
        if self.columns is not None:
            metadata[COLUMNS] = self.columns
        listing = "\n".join(f"| `{s3_url(self.bucket, o.key)}` | {o.size:,} |" for o in self.objects)
        return {
            **metadata,
            TARGET: self.target,
            PARTITION: self.partition,
            FINAL_KEY: self.final_key,
            OBJECTS_TABLE: dg.MetadataValue.md(f"| object | bytes |\n|---|---:|\n{listing}"),
            FINAL_OBJECTS: dg.MetadataValue.json([{"key": o.key, "size": o.size} for o in self.objects]),
            BYTES: dg.MetadataValue.int(self.bytes or 0),
            DELIVERED_AS: self.delivered_as,
            STAGED_FILES: dg.MetadataValue.int(self.staged_files),
            STAGING_URI: self.staging_uri,
            STAGING_CLEANED: self.staging_cleaned,
            UNLOAD_SECONDS: dg.MetadataValue.float(round(self.unload_seconds, 3)),
            RENAME_SECONDS: dg.MetadataValue.float(round(self.rename_seconds, 3)),
            CLIENT_BYTES: dg.MetadataValue.int(self.client_bytes),
            QUERY_ID: dg.MetadataValue.int(self.query_id),
            STATEMENT: dg.MetadataValue.md(f"```sql\n{self.statement}\n```"),
            **self._schema_change_metadata(),
        }

    def _schema_change_metadata(self) -> dict[str, dg.RawMetadataValue]:
        change = self.schema_change
        if change is None:
            return {}
        return {
            SCHEMA_CHANGE: change.summary(),
            SCHEMA_CHANGE_COLUMNS: dg.MetadataValue.json(change.to_json()),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], *, target: str = "") -> Delivery:
        """The delivery a materialisation recorded. Takes metadata values as Dagster stores them or as
        plain values; a key missing (metadata written by an older version, or by hand) reads as empty."""
        meta = plain(metadata)
        for key, former in _FORMERLY.items():
            if meta.get(key) in (None, "") and former in meta:
                meta[key] = meta[former]
        bucket, primary = parse_s3_uri(str(meta.get(URI) or ""))
        objects = tuple(
            FinalObject(str(o["key"]), int(o.get("size") or 0))
            for o in meta.get(FINAL_OBJECTS) or []
            if isinstance(o, dict) and "key" in o
        )
        delivered_as = str(meta.get(DELIVERED_AS) or "")
        # Recorded before the final key was: the primary key is it, or its parts' manifest.
        final_key = str(meta.get(FINAL_KEY) or "") or (
            primary.removesuffix(MANIFEST_SUFFIX) if delivered_as.startswith("parts") else primary
        )
        statement = str(meta.get(STATEMENT) or "")
        return cls(
            target=str(meta.get(TARGET) or target),
            partition=str(meta.get(PARTITION) or UNPARTITIONED),
            bucket=bucket,
            primary_key=primary,
            final_key=final_key,
            objects=objects,
            rows=_int(meta.get(ROWS)),
            bytes=_int(meta.get(BYTES)),
            delivered_as=delivered_as,
            staged_files=_int(meta.get(STAGED_FILES)) or 0,
            staging_uri=str(meta.get(STAGING_URI) or ""),
            staging_cleaned=meta.get(STAGING_CLEANED) is True,
            unload_seconds=float(meta.get(UNLOAD_SECONDS) or 0.0),
            rename_seconds=float(meta.get(RENAME_SECONDS) or 0.0),
            client_bytes=_int(meta.get(CLIENT_BYTES)) or 0,
            query_id=_int(meta.get(QUERY_ID)) or 0,
            statement=statement.removeprefix("```sql\n").removesuffix("\n```"),
            columns=meta.get(COLUMNS) if isinstance(meta.get(COLUMNS), dg.TableSchema) else None,
            schema_change=SchemaChange.from_json(meta.get(SCHEMA_CHANGE_COLUMNS)),
        )


def plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as the values it holds (what a materialisation record gives back)."""
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
