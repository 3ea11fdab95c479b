"""Op `rename_<group>`: every delivered target's staged files renamed to its final key(s), its
materialisation recorded and its checks evaluated as soon as it is delivered.

Up to `RENAME_WORKERS` targets at once, each retried on its own. The step fails at the end, naming every
target not delivered with its stage and error (`failed_targets` metadata, read by the Slack sensors).

In a run of several days (a backfill's range, the assets' BackfillPolicy) every (target, day) is renamed
and checked on its own, and recorded against its own partition: an `AssetMaterialization` with
`partition=<day>` and that day's Delivery as metadata, and `AssetCheckEvaluation`s with the same
partition, where an `Output` would record one materialisation per day of the range with the same
metadata. They are recorded once the step's work is done: Dagster's run retries and "re-execute from
asset failure" re-select an asset only if the run recorded no materialisation of it at all, so a worker
killed part-way through a range must leave none, for the retry to redo the range rather than leave its
undelivered days behind. A day that fails is named `<target> <day>`; Dagster's backfill counts the days
recorded as materialised and the rest of the failed run's range as failed.
"""

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.configuration import Configuration
from unload_assets.delivery import UNPARTITIONED, Delivery
from unload_assets.names import Names
from unload_assets.orchestration.checks import (
    evaluate_checks,
    evaluate_latest,
    failed_checks,
    on_day,
)
from unload_assets.orchestration.handoff import StagedUnload, TargetDay, UnloadFailed, target_days
from unload_assets.orchestration.op_support import (
    STEP_RETRY,
    error_line,
    failure_entry,
    not_delivered,
    selected,
)
from unload_assets.orchestration.retries import RENAME_BACKOFF, concurrently, with_retries
from unload_assets.orchestration.schema_protection import SchemaChangeRefused, check_schema
from unload_assets.rename import (
    HeaderStyle,
    RenameRequest,
    RenameResult,
    SplitRefused,
    delete_keys,
    list_keys,
    rename_unload,
)
from unload_assets.s3_naming import manifest_key_for, s3_url
from unload_assets.schema_change import manifest_columns

FROM_ASSET_FAILURE = "re-execute from asset failure to run it"
RENAME_WORKERS = 8  # S3 copies and deletes: I/O bound, no cap but S3's
MAX_ANCESTORS = 20  # earlier runs of a run group whose staging a delivery tidies (retries, re-executions)
# Built once and shared by every output: Dagster resolves an Out's type each time one is made.
_OPTIONAL_NOTHING = dg.Out(dg.Nothing, is_required=False)
_OPTIONAL_CHECK = dg.Out(is_required=False)


def rename_staged(
    context: dg.OpExecutionContext, names: Names, target: UnloadTarget, staged: StagedUnload, *, s3: Any
) -> Delivery:
    """Rename `target`'s staged files, unless their columns changed and the target refuses that (its
    `on_schema_change`: then SchemaChangeRefused, nothing final touched); what was delivered."""
    by_rename = target.header_by_rename
    style = HeaderStyle(target.format, target.delimiter, target.addquotes) if by_rename else None
    change = check_schema(context, names.asset_key(target.name), target, staged, s3=s3)
    request = RenameRequest(
        bucket=staged.bucket,
        staging_prefix=staged.staging_prefix,
        manifest_key=staged.manifest_key,
        final_key=staged.final_key,
        lock_key=staged.lock_key,
        on_split=target.on_split,
        fmt=target.format,
        compression=None if target.compression == "none" else target.compression,
        header=target.header and not by_rename,
        header_style=style,
        encryption=target.encryption,
    )
    started = time.monotonic()
    try:
        result = rename_unload(s3, request, log=context.log.info)
    except SplitRefused as exc:
        raise dg.Failure(description=f"Target '{target.name}': {exc}", allow_retries=False) from None
    seconds = time.monotonic() - started
    tidy_earlier_attempts(context, target, staged, s3=s3)
    return replace(_delivery(target, staged, result, seconds), schema_change=change)


def _delivery(
    target: UnloadTarget, staged: StagedUnload, result: RenameResult, rename_seconds: float
) -> Delivery:
    final_key = staged.final_key
    manifest_key = manifest_key_for(final_key)
    data = [obj for obj in result.objects if not (result.mode == "parts" and obj.key == manifest_key)]
    return Delivery(
        target=target.name,
        partition=staged.day.isoformat() if staged.day else UNPARTITIONED,
        bucket=staged.bucket,
        # With parts, the manifest is the one address a reader needs (COPY ... MANIFEST loads it).
        primary_key=manifest_key if result.mode == "parts" else final_key,
        final_key=final_key,
        objects=tuple(result.objects),
        rows=staged.rows,
        bytes=sum(obj.size for obj in data),
        delivered_as=result.mode + (f" (fell back: {why})" if (why := result.fallback_reason) else ""),
        staged_files=result.staged_files,
        staging_uri=s3_url(staged.bucket, staged.run_folder),
        staging_cleaned=result.staging_cleaned,
        unload_seconds=staged.seconds,
        rename_seconds=rename_seconds,
        client_bytes=result.client_bytes,
        query_id=staged.query_id,
        statement=staged.redacted_statement,
        columns=column_schema(result.schema),
    )


def column_schema(schema: dict | None) -> dg.TableSchema | None:
    """The UNLOAD manifest's schema (MANIFEST VERBOSE) as Dagster's column schema, types as Redshift
    names them: `character varying(60)`, `numeric(10,2)`. None without one (staging already gone)."""
    columns = manifest_columns(schema)
    if columns is None:
        return None
    return dg.TableSchema(columns=[dg.TableColumn(name=name, type=kind) for name, kind in columns])


def tidy_earlier_attempts(
    context: dg.OpExecutionContext, target: UnloadTarget, staged: StagedUnload, *, s3: Any
) -> None:
    """Once `target` is delivered, delete what the earlier runs of this run's group (the failed runs this
    one re-executes: a run retry, a re-execution) staged for the same target and day and never renamed,
    e.g. a run whose worker died after its UNLOAD. Each run stages under `.../<partition>/<run id>/`; an
    earlier run is finished before its re-execution starts, so nothing of its is still needed. A
    failure here is logged, not raised: the delivery stands, and `staging_cleaned` names any leftover."""
    here = staged.run_folder
    day_folder = here.rstrip("/").rsplit("/", 1)[0] + "/"
    earlier: list[str] = []
    run: dg.DagsterRun = context.run
    while run.parent_run_id and len(earlier) < MAX_ANCESTORS:
        earlier.append(run.parent_run_id)
        parent = context.instance.get_run_by_id(run.parent_run_id)
        if parent is None:
            break
        run = parent
    for run_id in earlier:
        folder = f"{day_folder}{run_id}/"
        if folder == here:
            continue  # the handoff came from there: the rename just cleaned it
        try:
            keys = list_keys(s3, staged.bucket, folder)
            if keys:
                delete_keys(s3, staged.bucket, keys)
                left = f"{len(keys)} staged file(s) that run {run_id[:8]} left (never renamed)"
                context.log.info(f"'{target.name}': removed {left}")
        except Exception as exc:  # the delivery stands; the staging_cleaned check names what is left
            context.log.warning(f"'{target.name}': could not remove what run {run_id[:8]} staged: {exc}")


def rename_op(
    config: Configuration, group: str, targets: Sequence[UnloadTarget], specs: list[dg.AssetCheckSpec]
) -> dg.OpDefinition:
    names = config.names

    def compute(context: dg.OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Any]:
        client, settings = getattr(context.resources, names.s3), getattr(context.resources, names.settings)
        staged: dict[str, StagedUnload | UnloadFailed] = inputs["staged"]
        failed: dict[str, dict[str, str]] = {}
        ready: list[tuple[TargetDay, StagedUnload]] = []
        for item in target_days(context, selected(context, names, targets)):
            handed = staged.get(item.label)
            if isinstance(handed, StagedUnload):
                ready.append((item, handed))
            elif isinstance(handed, UnloadFailed):
                again = ""
                if handed.run_id != context.run_id:
                    again = f" (in run {handed.run_id[:8]}, not run again: {FROM_ASSET_FAILURE})"
                failed[item.label] = failure_entry(item, "unload", handed.error + again)
            else:
                failed[item.label] = failure_entry(item, "unload", "the unload step handed nothing on")

        refused: set[str] = set()  # (target, day)s whose new schema was refused: stage "schema"

        def rename(work: tuple[TargetDay, StagedUnload]) -> tuple[Delivery, list[Any]]:
            item, handed = work
            target = item.target
            try:
                delivery = with_retries(
                    lambda _: rename_staged(context, names, target, handed, s3=client),
                    backoff=RENAME_BACKOFF,
                    what=f"rename of '{item.label}'",
                    log=context.log.warning,
                )
            except SchemaChangeRefused:
                refused.add(item.label)
                raise
            try:
                results = list(evaluate_checks(context, names, target, client, settings, delivery))
            except Exception as exc:  # delivered all the same: the checks say they could not judge it
                results = failed_checks(context, names, target, error_line(exc, settings))
            return delivery, results

        recorded: list[Any] = []  # a run of several days: each day's events, recorded at the end
        for outcome in concurrently(
            ready,
            rename,
            workers=RENAME_WORKERS,
            name=lambda work: work[0].label,
            describe_error=lambda exc: error_line(exc, settings),
        ):
            item = outcome.item[0]
            target = item.target
            if outcome.error is not None:
                stage = "schema" if item.label in refused else "rename"
                context.log.error(f"Rename of '{item.label}' failed: {outcome.error}")
                failed[item.label] = failure_entry(item, stage, outcome.error)
                continue
            delivery, results = outcome.result  # type: ignore[misc]
            if item.ranged and item.day is not None:
                key, day = names.asset_key(target.name), item.day.isoformat()
                recorded.append(
                    dg.AssetMaterialization(asset_key=key, partition=day, metadata=delivery.to_metadata())
                )
                recorded += [on_day(result, day) for result in results]
                continue
            yield dg.Output(None, names.output_name(target.name), metadata=delivery.to_metadata())
            yield from results
        yield from recorded
        # Checks selected without their asset (a checks-only run): judge the latest materialisation.
        checked_alone = {key.asset_key for key in context.selected_asset_check_keys}
        checked_alone -= set(context.selected_asset_keys)
        for target in targets:
            if names.asset_key(target.name) in checked_alone:
                yield from evaluate_latest(context, names, target, client, settings)
        if failed:
            raise not_delivered(failed)

    outs = {names.output_name(t.name): _OPTIONAL_NOTHING for t in targets}
    outs.update({spec.get_python_identifier(): _OPTIONAL_CHECK for spec in specs})
    return dg.OpDefinition(
        compute_fn=compute,
        name=names.rename_op(group),
        description="Rename each delivered target's staged files under its key template, then check it.",
        ins={"staged": dg.In(dict)},
        outs=outs,
        required_resource_keys={names.s3, names.settings},
        retry_policy=STEP_RETRY,
        tags={"kind": "s3"},
    )
