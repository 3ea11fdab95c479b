"""Schema-change protection: a target's staged columns against its previous delivery, before the rename
touches anything final.

The staged columns are the UNLOAD manifest's (MANIFEST VERBOSE); the previous delivery's are those its
materialisation recorded (`dagster/column_schema`): the latest of any partition that recorded them,
this run's own left aside. On a change, `on_schema_change: warn` delivers and says so (log, metadata,
Slack); `fail` refuses: the final output stays as it was, the staged files and the S3 handoff stay for
a re-run, and the target fails at once (a changed schema is not transient: no retry) with the columns
and the way to accept them. That way is one action: re-execute the failed run from failure with the run
tag `unload_assets/accept_schema_change` set to `true` or to the target names (comma-separated); only
the rename runs again, from the files staged by the refused run, and delivers.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.delivery import Delivery
from unload_assets.orchestration.handoff import StagedUnload
from unload_assets.rename import ManifestNotFound, read_manifest
from unload_assets.s3_naming import s3_url
from unload_assets.schema_change import Column, SchemaChange, compare, manifest_columns

ACCEPT_TAG = "unload_assets/accept_schema_change"
_LOOKBACK = 100  # materialisations read back at most to find the latest that recorded its columns
_PAGE = 20


class SchemaChangeRefused(dg.Failure):
    """`on_schema_change: fail` and the columns changed: nothing final was touched. Never retried."""

    def __init__(self, description: str) -> None:
        super().__init__(description=description, allow_retries=False)


def check_schema(
    context: dg.OpExecutionContext, key: dg.AssetKey, target: UnloadTarget, staged: StagedUnload, *, s3: Any
) -> SchemaChange | None:
    """What changed since `target`'s previous delivery (its asset `key`; None: nothing, or nothing to
    compare); raises
    SchemaChangeRefused for a change `target` does not take (`on_schema_change: fail`, not accepted)."""
    try:
        manifest = read_manifest(s3, staged.bucket, staged.manifest_key)
    except ManifestNotFound:  # renamed by an earlier attempt already: nothing left to protect
        return None
    current = manifest_columns(manifest.schema)
    if current is None:
        context.log.warning(f"Target '{target.name}': the UNLOAD manifest has no schema; not compared")
        return None
    previous = previous_columns(context.instance, key, context.run_id)
    change = compare(previous[0], current, since=previous[1]) if previous else None
    if change is None:
        return None
    if target.on_schema_change == "warn":
        context.log.warning(f"Target '{target.name}': {change.summary()}; delivered (on_schema_change: warn)")
        return change
    if accepted(context.run.tags, target.name):
        context.log.warning(
            f"Target '{target.name}': {change.summary()}; accepted by the run tag {ACCEPT_TAG}"
        )
        return replace(change, accepted=True)
    raise SchemaChangeRefused(refusal(target.name, change, s3_url(staged.bucket, staged.run_folder)))


def refusal(target: str, change: SchemaChange, staging_uri: str) -> str:
    """The failure of a refused change: the columns, then how to accept them, then what was kept."""
    return (
        f"Target '{target}': {change.summary()}. To accept the new schema, re-execute this run from "
        f"failure with the run tag {ACCEPT_TAG}={target} (or true). on_schema_change is 'fail': nothing "
        f"final was touched and the staged files stay in {staging_uri}."
    )


def accepted(tags: dict[str, str] | Any, target: str) -> bool:
    """Whether the run's tag accepts `target`'s new schema: `true`, or a list of names holding it."""
    names = {name.strip() for name in str(tags.get(ACCEPT_TAG) or "").split(",")}
    return target in names or "true" in {name.lower() for name in names}


def previous_columns(
    instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str
) -> tuple[tuple[Column, ...], str] | None:
    """The columns of `key`'s latest materialisation that recorded them (other than run `run_id`'s),
    and which delivery that was: its day, or its time (UTC) when unpartitioned."""
    cursor: str | None = None
    for _ in range(_LOOKBACK // _PAGE):
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=_PAGE, cursor=cursor
        )
        for record in page.records:
            materialization = record.asset_materialization
            if record.run_id == run_id or materialization is None:
                continue
            schema = Delivery.from_metadata(materialization.metadata).columns
            if schema is None:
                continue
            columns = tuple((column.name, column.type) for column in schema.columns)
            when = datetime.fromtimestamp(record.timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            return columns, materialization.partition or when
        if not page.has_more:
            return None
        cursor = page.cursor
    return None
