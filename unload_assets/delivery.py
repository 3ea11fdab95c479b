"""The delivery record: what one rename delivered for one target and one day.

The rename op writes it as the materialisation's metadata (`Delivery.to_metadata`); the checks, the run
reports and the Slack messages read it back (`Delivery.from_metadata`). The metadata keys are named here
and nowhere else, so a key cannot be written under one name and read under another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from unload_assets.rename import FinalObject
from unload_assets.s3_naming import parse_s3_uri, s3_url
from unload_assets.schema_change import SchemaChange

UNPARTITIONED = "unpartitioned"
FAILED_TARGETS = "failed_targets"  # metadata of the rename step's Failure: {target: {stage, error}}
ROW_COUNT = "dagster/row_count"  # Dagster's standard keys: the catalog shows them
PARTITION_ROW_COUNT = "dagster/partition_row_count"
URI = "dagster/uri"
COLUMN_SCHEMA = "dagster/column_schema"
SCHEMA_CHANGE = "schema_change"  # one line: what changed since the previous delivery (absent: nothing)
SCHEMA_CHANGE_COLUMNS = "schema_change_columns"  # the same, every column, as JSON (what is read back)


@dataclass(frozen=True)
class Delivery:
    """One target's delivery of one partition."""

    target: str
    partition: str  # the day (ISO) or "unpartitioned"
    bucket: str
    primary_key: str  # what a reader opens: the final key, or the COPY manifest of the parts
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
        standard: dict[str, dg.RawMetadataValue] = {
            ROW_COUNT: dg.MetadataValue.int(self.rows or 0),
            URI: self.uri,
        }
        if self.partition != UNPARTITIONED:
            standard[PARTITION_ROW_COUNT] = dg.MetadataValue.int(self.rows or 0)
        if self.columns is not None:
            standard[COLUMN_SCHEMA] = self.columns
        listing = "\n".join(f"| `{s3_url(self.bucket, o.key)}` | {o.size:,} |" for o in self.objects)
        return {
            **standard,
            "s3_uri": dg.MetadataValue.url(self.uri),
            "s3_objects": dg.MetadataValue.md(f"| object | bytes |\n|---|---:|\n{listing}"),
            "final_objects": dg.MetadataValue.json([{"key": o.key, "size": o.size} for o in self.objects]),
            "staging_prefix": self.staging_uri,
            "partition": self.partition,
            "rows": dg.MetadataValue.int(self.rows or 0),
            "bytes": dg.MetadataValue.int(self.bytes or 0),
            "staged_files": dg.MetadataValue.int(self.staged_files),
            "finalized_as": self.delivered_as,
            "staging_cleaned": self.staging_cleaned,
            "unload_seconds": dg.MetadataValue.float(round(self.unload_seconds, 3)),
            "rename_seconds": dg.MetadataValue.float(round(self.rename_seconds, 3)),
            "rename_client_bytes": dg.MetadataValue.int(self.client_bytes),
            "redshift_query_id": dg.MetadataValue.int(self.query_id),
            "statement": dg.MetadataValue.md(f"```sql\n{self.statement}\n```"),
            "target": self.target,
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
        bucket, primary = parse_s3_uri(str(meta.get("s3_uri") or ""))
        objects = tuple(
            FinalObject(str(o["key"]), int(o.get("size") or 0))
            for o in meta.get("final_objects") or []
            if isinstance(o, dict) and "key" in o
        )
        statement = str(meta.get("statement") or "")
        return cls(
            target=str(meta.get("target") or target),
            partition=str(meta.get("partition") or UNPARTITIONED),
            bucket=bucket,
            primary_key=primary,
            objects=objects,
            rows=_int(meta.get("rows")),
            bytes=_int(meta.get("bytes")),
            delivered_as=str(meta.get("finalized_as") or ""),
            staged_files=_int(meta.get("staged_files")) or 0,
            staging_uri=str(meta.get("staging_prefix") or ""),
            staging_cleaned=meta.get("staging_cleaned") is True,
            unload_seconds=float(meta.get("unload_seconds") or 0.0),
            rename_seconds=float(meta.get("rename_seconds") or 0.0),
            client_bytes=_int(meta.get("rename_client_bytes")) or 0,
            query_id=_int(meta.get("redshift_query_id")) or 0,
            statement=statement.removeprefix("```sql\n").removesuffix("\n```"),
            columns=meta.get(COLUMN_SCHEMA) if isinstance(meta.get(COLUMN_SCHEMA), dg.TableSchema) else None,
            schema_change=SchemaChange.from_json(meta.get(SCHEMA_CHANGE_COLUMNS)),
        )


def plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as the values it holds (what a materialisation record gives back)."""
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
