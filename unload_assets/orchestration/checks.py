"""The check on each delivery: what the rename recorded is what S3 holds.

The rename op evaluates a target's check right after delivering it, from the metadata it just recorded
(`check_specs` on the unload assets, see assets.py): no step of its own, and a target that fails
leaves the others checked. A run that selects the check without its asset (a checks-only run from the
UI) judges the materialisation of its partition instead (`evaluate_latest`).

One check per target, `delivered`, judges every aspect of the delivery at once and names each problem
(`problems` metadata): Dagster writes three events for each check of each target (planned, output,
evaluation), which made the four checks of earlier versions (final_objects_present, has_rows,
staging_cleaned, one_object) cost half of a morning's Dagster CPU (benchmarks/bench_morning.py).
"""

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.delivery import DELIVERED_AS, PARTITION, ROWS, STAGING_URI, Delivery
from unload_assets.encryption import Encryption
from unload_assets.names import Names
from unload_assets.rename import STAGING_TAG, final_key_lock, lock_key_for
from unload_assets.resources import UnloadSettings
from unload_assets.s3_naming import parse_s3_uri

CHECK = "delivered"
DESCRIPTION = (
    "The delivery is what S3 holds: every recorded final object is there with its recorded size, this "
    "delivery's stamp and the target's KMS key, and no staged file is left behind (error). Warns when "
    "the UNLOAD wrote no rows, when `combine` had to deliver parts instead of one object, and when "
    "another run's output has replaced this one since."
)
# What each aspect's problem costs the check: an error, or a warning that leaves the delivery usable.
ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def check_specs(names: Names, target: UnloadTarget) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(CHECK, asset=names.asset_key(target.name), description=DESCRIPTION)]


def evaluate_checks(
    context: dg.OpExecutionContext,
    names: Names,
    target: UnloadTarget,
    client: Any,
    settings: UnloadSettings,
    delivery: Delivery,
) -> Iterator[dg.AssetCheckResult]:
    """The check of `target` on `delivery`, if the run selected it."""
    key = names.asset_key(target.name)
    if _selected(context, key):
        yield _evaluate(context, key, target, client, settings, delivery)


def failed_checks(
    context: dg.OpExecutionContext, names: Names, target: UnloadTarget, error: str
) -> list[dg.AssetCheckResult]:
    """The check of `target` if selected, failed because it could not be evaluated (`error`)."""
    key = names.asset_key(target.name)
    return [_failed(key, error)] if _selected(context, key) else []


def evaluate_latest(
    context: dg.OpExecutionContext, names: Names, target: UnloadTarget, client: Any, settings: UnloadSettings
) -> Iterator[dg.AssetCheckResult]:
    """A checks-only run: the check of `target` on its partition's latest materialisation."""
    key = names.asset_key(target.name)
    if not _selected(context, key):
        return
    materialization = _materialization_checked(context, key)
    if materialization is None:
        yield _failed(key, "never materialised")
        return
    delivery = Delivery.from_metadata(materialization.metadata, target=target.name)
    yield _evaluate(context, key, target, client, settings, delivery)


def _selected(context: dg.OpExecutionContext, key: dg.AssetKey) -> bool:
    return dg.AssetCheckKey(key, CHECK) in context.selected_asset_check_keys


def _failed(key: dg.AssetKey, reason: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key, check_name=CHECK, passed=False, severity=ERROR, metadata={"problems": reason}
    )


def on_day(result: dg.AssetCheckResult, day: str) -> dg.AssetCheckEvaluation:
    """`result` recorded against partition `day`: in a run of several days each day's checks are its own
    (an AssetCheckResult would be recorded against the run, not a day of it)."""
    assert result.asset_key is not None and result.check_name is not None  # ours always name both
    return dg.AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        partition=day,
    )


def _evaluate(
    context: dg.OpExecutionContext,
    key: dg.AssetKey,
    target: UnloadTarget,
    client: Any,
    settings: UnloadSettings,
    delivery: Delivery,
) -> dg.AssetCheckResult:
    bucket = delivery.bucket
    if not bucket:  # not written by our rename (reported by hand, say): nothing to judge it by
        return _failed(key, "no s3_uri recorded")
    final_key = delivery.final_key or target.final_key(delivery.day)
    # Under the final key's lock: not while another run of this partition is rewriting the output.
    with final_key_lock(
        client,
        bucket=bucket,
        lock_key=lock_key_for(settings.staging_key_prefix(), final_key),
        final_key=final_key,
        owner=f"checks of run {context.run.run_id}",
        log=context.log.info,
        write_args=target.encryption.write_args(),
    ):
        objects, replaced_by = _objects_present(client, delivery, target.encryption)
    rows = delivery.rows or 0
    problems: list[tuple[dg.AssetCheckSeverity, str]] = [
        # Another run's complete output took these keys over (runs of one partition side by side): this
        # delivery is superseded, not broken; a warning instead of an error.
        *((WARN if replaced_by else ERROR, problem) for problem in objects),
        *((ERROR, problem) for problem in _staging_left(client, delivery.staging_uri)),
        *([(WARN, "the UNLOAD wrote no rows")] if rows == 0 else []),
        *(
            [(WARN, "the final key holds a manifest of parts, not one object (on_split: combine)")]
            if target.on_split == "combine" and delivery.in_parts
            else []
        ),
    ]
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK,
        passed=not problems,
        severity=ERROR if any(severity == ERROR for severity, _ in problems) else WARN,
        metadata={
            "problems": "\n".join(problem for _, problem in problems) or "none",
            "objects_checked": len(delivery.objects),
            ROWS: rows,
            PARTITION: delivery.partition,
            DELIVERED_AS: delivery.delivered_as,
            "read_from": delivery.uri,
            STAGING_URI: delivery.staging_uri,
            **({"replaced_by_output_of": replaced_by} if replaced_by else {}),
        },
    )


def _materialization_checked(
    context: dg.OpExecutionContext, key: dg.AssetKey
) -> dg.AssetMaterialization | None:
    """This run's materialisation of `key`; in a checks-only run, the latest of the run's partition.

    Not simply the asset's latest: with runs side by side (a backfill, a re-run next to the schedule)
    that may be another partition's or another run's.
    """
    instance, run_id = context.instance, context.run.run_id
    partition = context.run.tags.get("dagster/partition")
    records_filter = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None)
    # Newest first, by the asset key's index: this run's record is among the first unless other runs
    # materialised the key since. Older than the run itself, it cannot be this run's. (RunOutcome the run's
    # own materialisations instead would read every target's in a 1000-target run, once per check.)
    run = instance.get_run_record_by_id(run_id)
    since = run.create_timestamp.timestamp() if run is not None else 0.0
    latest: dg.AssetMaterialization | None = None
    cursor: str | None = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=50, cursor=cursor)
        for record in page.records:
            latest = latest or record.asset_materialization
            if record.run_id == run_id:
                return record.asset_materialization
            if record.timestamp < since:
                return latest
        if not page.has_more:
            return latest
        cursor = page.cursor


def _objects_present(client: Any, delivery: Delivery, encryption: Encryption) -> tuple[list[str], str | None]:
    """What is wrong with the recorded final objects: each must be in S3 with its recorded size and the
    stamp of this delivery's rename (an object of the same size put there by anyone else is wrong too),
    encrypted as the target asks (SSE-KMS with its key). Nothing recorded is wrong: a delivery with no
    objects is not a delivery. Also the staging folder of another run whose output replaced this one."""
    recorded = delivery.objects
    problems = [] if recorded else ["the materialisation recorded no final objects"]
    ours = parse_s3_uri(delivery.staging_uri)[1]
    for obj in recorded:
        try:
            found = client.head_object(Bucket=delivery.bucket, Key=obj.key)
        except client.exceptions.ClientError as exc:
            problems.append(f"{obj.key}: {exc.response.get('Error', {}).get('Code', 'missing')}")
            continue
        if found["ContentLength"] != obj.size:
            problems.append(f"{obj.key}: {found['ContentLength']} bytes in S3, {obj.size} recorded")
        elif not ours or not unquote(found.get("Metadata", {}).get(STAGING_TAG, "")).startswith(ours):
            problems.append(f"{obj.key}: not the object this delivery wrote (replaced since)")
        elif wrong := encryption.problem(found):
            problems.append(f"{obj.key}: {wrong}")
    return problems, (_replaced_by(client, delivery) if problems and recorded else None)


def _replaced_by(client: Any, delivery: Delivery) -> str | None:
    """The staging folder of the run whose renamed output now sits at this run's final address, if
    that is another run (the stamp `rename_unload` puts on every final object), else None."""
    ours = parse_s3_uri(delivery.staging_uri)[1]
    try:
        stamp = client.head_object(Bucket=delivery.bucket, Key=delivery.primary_key).get("Metadata", {})
        stamp = stamp.get(STAGING_TAG)
    except client.exceptions.ClientError:
        return None
    writer = unquote(stamp) if stamp else None
    return writer if writer and ours and not writer.startswith(ours) else None


def _staging_left(client: Any, staging_uri: str) -> list[str]:
    """A problem for each staged file still under this delivery's staging folder (up to 10)."""
    bucket, prefix = parse_s3_uri(staging_uri)
    if not bucket or not prefix:
        return ["no staging folder recorded"]
    left = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=10).get("Contents", [])
    return [f"staging not cleaned: {o['Key']}" for o in left]
