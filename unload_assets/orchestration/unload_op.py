"""Op `unload_<group>`: the UNLOAD of every selected target into a fresh staging prefix of this run.

A run serves one day, or a backfill's range of days: every (target, day) is its own UNLOAD. At most
`max_concurrent_unloads` run at once across all of them (the instance's pool, `redshift`, caps the
steps: the cluster's cap holds inside a run of 30 days as in a run of one), each retried on its own;
one that fails for good is handed on as `UnloadFailed`, so the rename op names it while the others are
delivered. When every one of the step failed, the step itself fails naming them (nothing is left to
rename), and "re-execute from failure" runs their UNLOADs again.
"""

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import dagster as dg
from botocore.exceptions import ClientError

from unload_assets.catalogue import UnloadTarget
from unload_assets.configuration import Configuration
from unload_assets.orchestration.handoff import StagedUnload, TargetDay, UnloadFailed, run_folder, target_days
from unload_assets.orchestration.op_support import (
    STEP_RETRY,
    error_line,
    failure_entry,
    not_delivered,
    selected,
)
from unload_assets.orchestration.retries import UNLOAD_BACKOFF, concurrently, with_retries
from unload_assets.rename import delete_keys, list_keys, lock_key_for
from unload_assets.resources import RedshiftUnloadResource, UnloadSettings
from unload_assets.s3_naming import parse_s3_uri, staging_prefix
from unload_assets.statement.build import build_unload

NOTHING_IN = dg.In(dg.Nothing)


def run_unload(
    context: dg.OpExecutionContext,
    target: UnloadTarget,
    *,
    day: date | None,
    redshift: RedshiftUnloadResource,
    settings: UnloadSettings,
    s3: Any,
    attempt: int = 0,
    stop: threading.Event | None = None,
) -> StagedUnload:
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
    s3_client = s3  # the boto3 client (context.resources.s3)
    leftovers = list_keys(s3_client, bucket, run_folder(key_prefix))
    if leftovers:
        context.log.info(f"Removing {len(leftovers)} staged file(s) left by an earlier attempt of this run")
        delete_keys(s3_client, bucket, leftovers)
    statement = build_unload(target, partition_date=day, location=location, auth=settings.auth())
    outcome = redshift.unload(
        statement.sql,
        redacted=statement.redacted,
        secrets=settings.secrets(),
        log=context.log,  # type: ignore[arg-type]
        stop=stop,
    )
    # The rows, the seconds and the staging folder are in the materialisation's metadata: no log line
    # (each is an event written per target; the statement was logged as it started).
    final_key = target.final_key(day)
    return StagedUnload(
        bucket=bucket,
        staging_prefix=key_prefix,
        manifest_key=key_prefix + "manifest",
        lock_key=lock_key_for(settings.staging_key_prefix(), final_key),
        day=day,
        final_key=final_key,
        rows=outcome.rows,
        query_id=outcome.query_id,
        seconds=outcome.seconds,
        redacted_statement=statement.redacted,
    )


def check_bucket_owner(s3: Any, settings: UnloadSettings) -> None:
    """Redshift's UNLOAD cannot send ExpectedBucketOwner: before any UNLOAD of the step, one listing of
    the bucket carries it (the client adds it, resources/s3.py), and a refusal stops the step before
    anything is written. Any other error (a network fault) is raised as it is, to be retried."""
    bucket, owner = settings.bucket, settings.expected_bucket_owner
    try:
        s3.list_objects_v2(Bucket=bucket, Prefix=settings.staging_key_prefix() + "/", MaxKeys=1)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if str(error.get("Code")) not in ("AccessDenied", "403", "Forbidden"):
            raise
        raise dg.Failure(
            description=f"Bucket s3://{bucket} refused a request that expects it to belong to account "
            f"{owner} (ExpectedBucketOwner): {error.get('Code')}: {error.get('Message')}. Nothing was "
            "unloaded or written. Check s3.bucket and s3.expected_bucket_owner (or the catalogue's "
            "defaults.expected_bucket_owner), and that this worker may list the bucket.",
            allow_retries=False,
        ) from None


def unload_op(
    config: Configuration, group: str, targets: Sequence[UnloadTarget], input_names: list[str]
) -> dg.OpDefinition:
    names = config.names

    def compute(context: dg.OpExecutionContext, _: Mapping[str, Any]) -> Iterator[dg.Output[dict]]:
        res = context.resources
        settings, redshift, s3 = (getattr(res, key) for key in (names.settings, names.redshift, names.s3))
        stop = threading.Event()  # set when Dagster interrupts the step: running statements are cancelled

        def unload(item: TargetDay) -> StagedUnload:
            return with_retries(
                lambda number: run_unload(
                    context,
                    item.target,
                    day=item.day,
                    redshift=redshift,
                    settings=settings,
                    s3=s3,
                    attempt=number,
                    stop=stop,
                ),
                backoff=UNLOAD_BACKOFF,
                what=f"UNLOAD of '{item.label}'",
                log=context.log.warning,
            )

        if settings.expected_bucket_owner:
            check_bucket_owner(s3, settings)
        # Keyed by TargetDay.label: the target's name, or "<target> <day>" in a run of several days.
        staged: dict[str, StagedUnload | UnloadFailed] = {}
        failed: dict[str, dict[str, str]] = {}
        for outcome in concurrently(
            target_days(context, selected(context, names, targets)),
            unload,  # one pool for every (target, day): at most max_concurrent_unloads at once
            workers=settings.max_concurrent_unloads,
            name=lambda item: item.label,
            describe_error=lambda exc: error_line(exc, settings),
            stop=stop,
        ):
            label = outcome.item.label
            if outcome.error is not None:
                context.log.error(f"UNLOAD of '{label}' failed: {outcome.error}")
                staged[label] = UnloadFailed(run_id=context.run_id, error=outcome.error)
                failed[label] = failure_entry(outcome.item, "unload", outcome.error)
            else:
                staged[label] = outcome.result  # type: ignore[assignment]
        if staged and len(failed) == len(staged):  # nothing to rename: the failure is this step's
            raise not_delivered(failed)
        yield dg.Output(staged, "staged")

    return dg.OpDefinition(
        compute_fn=compute,
        name=names.unload_op(group),
        description="UNLOAD the query of each selected target into a staging prefix of this run "
        "(at most `max_concurrent_unloads` at once, each retried on its own).",
        ins=dict.fromkeys(input_names, NOTHING_IN),
        outs={"staged": dg.Out(dict, io_manager_key=names.handoff)},
        required_resource_keys={names.redshift, names.settings, names.s3},
        pool=config.pool,
        retry_policy=STEP_RETRY,
        tags={"kind": "redshift"},
    )
