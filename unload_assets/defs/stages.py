"""What the two ops do for one target: run its UNLOAD into staging, then rename its keys."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.rename.header import HeaderStyle, header_by_rename
from unload_assets.rename.lock import lock_key_for
from unload_assets.rename.s3ops import delete_keys, list_keys
from unload_assets.rename.step import RenameResult, SplitRefused, rename_unload
from unload_assets.resources import RedshiftUnloadResource, UnloadSettings
from unload_assets.s3_naming import parse_s3_uri, render_key, staging_prefix
from unload_assets.statement.build import build_unload


@dataclass(frozen=True)
class StagedUnload:
    """What the unload op hands to the rename op: pickled to S3 by the handoff IO manager, so that a retry
    or a re-execution from failure on another machine finds it."""

    bucket: str
    staging_prefix: str  # key prefix of this attempt's staging folder, ending in '/'
    manifest_key: str
    lock_key: (
        str  # the lock object `rename_unload` holds; under staging, unseen by readers of the final prefix
    )
    rows: int
    query_id: int
    seconds: float
    redacted_statement: str


def partition_date(context: dg.OpExecutionContext, target: UnloadTarget) -> date | None:
    return date.fromisoformat(context.partition_key) if target.partitioning.type == "daily" else None


def _run_folder(attempt_prefix: str) -> str:
    """`<staging>/<target>/<partition>/<run_id>/` from an attempt's `.../<run_id>/attempt-N/`."""
    return attempt_prefix.rstrip("/").rsplit("/", 1)[0] + "/"


def run_unload(
    context: dg.OpExecutionContext,
    target: UnloadTarget,
    *,
    redshift: RedshiftUnloadResource,
    settings: UnloadSettings,
    s3: Any,
    attempt: int = 0,
) -> StagedUnload:
    day = partition_date(context, target)
    # Each attempt gets its own folder: UNLOAD refuses a non-empty destination, and a failed attempt
    # on a real cluster may leave partial files behind.
    location = staging_prefix(
        bucket=settings.bucket,
        staging_prefix=settings.staging_key_prefix(),
        target_name=target.name,
        partition_key=day.isoformat() if day else None,
        # (a step Dagster retried whole, after a crash, numbers its attempts apart)
        run_id=f"{context.run_id}/"
        + (f"retry-{context.retry_number}-" if context.retry_number else "")
        + f"attempt-{attempt}",
    )
    bucket, key_prefix = parse_s3_uri(location)
    # Nothing an earlier attempt of this run staged is of use any more (its rename never ran).
    run_folder = _run_folder(key_prefix)
    s3_client = s3  # the boto3 client (context.resources.s3)
    leftovers = list_keys(s3_client, bucket, run_folder)
    if leftovers:
        context.log.info(f"Removing {len(leftovers)} staged file(s) left by an earlier attempt of this run")
        delete_keys(s3_client, bucket, leftovers)
    statement = build_unload(target, partition_date=day, location=location, auth=settings.auth())
    outcome = redshift.unload(
        statement.sql,
        redacted=statement.redacted,
        secrets=settings.secrets(),
        log=context.log,  # type: ignore[arg-type]
    )
    context.log.info(f"UNLOAD wrote {outcome.rows} rows to {location} in {outcome.seconds:.1f}s")
    final_key = render_key(target.key_template, target=target.name, partition_date=day)
    return StagedUnload(
        bucket=bucket,
        staging_prefix=key_prefix,
        manifest_key=key_prefix + "manifest",
        lock_key=lock_key_for(settings.staging_key_prefix(), final_key),
        rows=outcome.rows,
        query_id=outcome.query_id,
        seconds=outcome.seconds,
        redacted_statement=statement.redacted,
    )


def rename_staged(
    context: dg.OpExecutionContext, target: UnloadTarget, staged: StagedUnload, *, s3: Any
) -> dict[str, dg.RawMetadataValue]:
    """Rename `target`'s staged files; the delivery's materialisation metadata."""
    day = partition_date(context, target)
    final_key = render_key(target.key_template, target=target.name, partition_date=day)
    by_rename = header_by_rename(fmt=target.format, header=target.header, on_split=target.on_split)
    style = HeaderStyle(target.format, target.delimiter, target.addquotes) if by_rename else None
    started = time.monotonic()
    try:
        result = rename_unload(
            s3,
            bucket=staged.bucket,
            staging_prefix=staged.staging_prefix,
            manifest_key=staged.manifest_key,
            final_key=final_key,
            lock_key=staged.lock_key,
            on_split=target.on_split,
            fmt=target.format,
            compression=None if target.compression == "none" else target.compression,
            header=target.header and not by_rename,
            header_style=style,
            log=context.log.info,
        )
    except SplitRefused as exc:
        raise dg.Failure(description=f"Target '{target.name}': {exc}", allow_retries=False) from None
    seconds = time.monotonic() - started
    return _metadata(target, staged, result, final_key, day, seconds)


def _metadata(
    target: UnloadTarget,
    staged: StagedUnload,
    result: RenameResult,
    final_key: str,
    day: date | None,
    rename_seconds: float,
) -> dict[str, dg.RawMetadataValue]:
    manifest_key = final_key + ".manifest"
    data = [obj for obj in result.objects if not (result.mode == "parts" and obj.key == manifest_key)]
    # With parts, the manifest is the one address a reader needs (COPY ... MANIFEST loads it).
    primary = manifest_key if result.mode == "parts" else final_key
    listing = "\n".join(f"| `s3://{staged.bucket}/{obj.key}` | {obj.size:,} |" for obj in result.objects)
    how = result.mode + (f" (fell back: {result.fallback_reason})" if result.fallback_reason else "")
    standard: dict[str, dg.RawMetadataValue] = {  # what Dagster's catalog shows (row count, URI, columns)
        "dagster/row_count": dg.MetadataValue.int(staged.rows),
        "dagster/uri": f"s3://{staged.bucket}/{primary}",
    }
    if day is not None:
        standard["dagster/partition_row_count"] = dg.MetadataValue.int(staged.rows)
    columns = column_schema(result.schema)
    if columns is not None:
        standard["dagster/column_schema"] = columns
    return {
        **standard,
        "s3_uri": dg.MetadataValue.url(f"s3://{staged.bucket}/{primary}"),
        "s3_objects": dg.MetadataValue.md(f"| object | bytes |\n|---|---:|\n{listing}"),
        "final_objects": dg.MetadataValue.json(
            [{"key": obj.key, "size": obj.size} for obj in result.objects]
        ),
        "staging_prefix": f"s3://{staged.bucket}/{_run_folder(staged.staging_prefix)}",
        "partition": day.isoformat() if day else "unpartitioned",
        "rows": dg.MetadataValue.int(staged.rows),
        "bytes": dg.MetadataValue.int(sum(obj.size for obj in data)),
        "staged_files": dg.MetadataValue.int(result.staged_files),
        "finalized_as": how,
        "staging_cleaned": result.staging_cleaned,
        "unload_seconds": dg.MetadataValue.float(round(staged.seconds, 3)),
        "rename_seconds": dg.MetadataValue.float(round(rename_seconds, 3)),
        # Object data that passed through the worker (the rest was copied server-side).
        "rename_client_bytes": dg.MetadataValue.int(result.client_bytes),
        "redshift_query_id": dg.MetadataValue.int(staged.query_id),
        "statement": dg.MetadataValue.md(f"```sql\n{staged.redacted_statement}\n```"),
        "target": target.name,
    }


def column_schema(schema: dict | None) -> dg.TableSchema | None:
    """The UNLOAD manifest's schema (MANIFEST VERBOSE) as Dagster's column schema, types as Redshift
    names them: `character varying(60)`, `numeric(10,2)`. None without one (staging already gone)."""
    elements = (schema or {}).get("elements")
    if not isinstance(elements, list) or not elements:
        return None
    columns = []
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get("name"), str):
            return None
        found = element.get("type")
        kind: dict[str, Any] = found if isinstance(found, dict) else {}
        name = str(kind.get("base") or "unknown")
        if "max_length" in kind:
            name += f"({kind['max_length']})"
        elif "precision" in kind:
            name += f"({kind['precision']},{kind.get('scale', 0)})"
        columns.append(dg.TableColumn(name=element["name"], type=name))
    return dg.TableSchema(columns=columns)
