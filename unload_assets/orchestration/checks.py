"""Checks on each delivery: what the rename recorded is what S3 holds.

The rename op evaluates a target's checks right after delivering it, from the metadata it just recorded
(`check_specs` on the unload assets, see assets.py): no step of their own, and a target that fails
leaves the others checked. A run that selects checks without their asset (a checks-only run from the
UI) judges the materialisation of its partition instead (`evaluate_latest`).
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

CHECKS = {
    "final_objects_present": "Final objects exist with the recorded sizes (and the target's KMS key).",
    "has_rows": "The UNLOAD wrote at least one row (warns).",
    "staging_cleaned": "No staged file is left behind.",
    "one_object": "The final key holds the whole output as one object, not a manifest of parts (warns; "
    "targets with on_split: combine).",
}


def check_names(target: UnloadTarget) -> list[str]:
    """The checks `target` has: `one_object` only where the target asked for one object (combine)."""
    return [name for name in CHECKS if name != "one_object" or target.on_split == "combine"]


def check_specs(names: Names, target: UnloadTarget) -> list[dg.AssetCheckSpec]:
    key = names.asset_key(target.name)
    return [dg.AssetCheckSpec(name, asset=key, description=CHECKS[name]) for name in check_names(target)]


def evaluate_checks(
    context: dg.OpExecutionContext,
    names: Names,
    target: UnloadTarget,
    client: Any,
    settings: UnloadSettings,
    delivery: Delivery,
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of `target`, on `delivery`."""
    key = names.asset_key(target.name)
    selected = _selected(context, key)
    return (
        r for r in _evaluate(context, key, target, client, settings, delivery) if r.check_name in selected
    )


def failed_checks(
    context: dg.OpExecutionContext, names: Names, target: UnloadTarget, error: str
) -> list[dg.AssetCheckResult]:
    """The selected checks of `target`, failed because they could not be evaluated (`error`)."""
    key = names.asset_key(target.name)
    return _all_failed(key, target, _selected(context, key), error)


def evaluate_latest(
    context: dg.OpExecutionContext, names: Names, target: UnloadTarget, client: Any, settings: UnloadSettings
) -> Iterator[dg.AssetCheckResult]:
    """A checks-only run: the selected checks of `target` on its partition's latest materialisation."""
    key = names.asset_key(target.name)
    selected = _selected(context, key)
    materialization = _materialization_checked(context, key)
    if materialization is None:
        yield from _all_failed(key, target, selected, "never materialised")
        return
    delivery = Delivery.from_metadata(materialization.metadata, target=target.name)
    yield from (
        r for r in _evaluate(context, key, target, client, settings, delivery) if r.check_name in selected
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


def _selected(context: dg.OpExecutionContext, key: dg.AssetKey) -> set[str]:
    return {k.name for k in context.selected_asset_check_keys if k.asset_key == key}


def _all_failed(
    key: dg.AssetKey, target: UnloadTarget, names: set[str] | list[str], reason: str
) -> list[dg.AssetCheckResult]:
    """Each of `names` among `target`'s checks, failed for `reason`."""
    return [
        dg.AssetCheckResult(asset_key=key, check_name=name, passed=False, metadata={"reason": reason})
        for name in check_names(target)
        if name in names
    ]


def _evaluate(
    context: dg.OpExecutionContext,
    key: dg.AssetKey,
    target: UnloadTarget,
    client: Any,
    settings: UnloadSettings,
    delivery: Delivery,
) -> Iterator[dg.AssetCheckResult]:
    names = check_names(target)
    bucket = delivery.bucket
    if not bucket:  # not written by our rename (reported by hand, say): nothing to judge it by
        yield from _all_failed(key, target, names, "no s3_uri recorded")
        return
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
        yield _objects_present(key, client, delivery, target.encryption)
    rows = delivery.rows or 0
    yield dg.AssetCheckResult(
        asset_key=key,
        check_name="has_rows",
        passed=rows > 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={ROWS: rows, PARTITION: delivery.partition},
    )
    yield _staging_cleaned(key, client, delivery.staging_uri)
    if "one_object" in names:
        yield _one_object(key, delivery)


def _one_object(key: dg.AssetKey, delivery: Delivery) -> dg.AssetCheckResult:
    """Warns when `combine` had to deliver parts (Parquet): readers of the final key find a manifest."""
    parts = delivery.in_parts
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="one_object",
        passed=not parts,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            DELIVERED_AS: delivery.delivered_as,
            "read_from": delivery.uri,
            **({"reason": "the final key holds a manifest of parts, not the file"} if parts else {}),
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


def _objects_present(
    key: dg.AssetKey, client: Any, delivery: Delivery, encryption: Encryption
) -> dg.AssetCheckResult:
    """Every recorded final object is in S3 with its recorded size and the stamp of this delivery's
    rename (an object of the same size put there by anyone else fails too), encrypted as the target
    asks (SSE-KMS with its key). Nothing recorded fails: a delivery with no objects is not a delivery."""
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
    replaced_by = _replaced_by(client, delivery) if problems and recorded else None
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="final_objects_present",
        passed=not problems,
        # Another run's complete output took these keys over (runs of one partition side by side): this
        # delivery is superseded, not broken; warn instead of raising an error.
        severity=dg.AssetCheckSeverity.WARN if replaced_by else dg.AssetCheckSeverity.ERROR,
        metadata={
            "checked": len(recorded),
            "problems": "\n".join(problems) or "none",
            **({"replaced_by_output_of": replaced_by} if replaced_by else {}),
        },
    )


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


def _staging_cleaned(key: dg.AssetKey, client: Any, staging_uri: str) -> dg.AssetCheckResult:
    bucket, prefix = parse_s3_uri(staging_uri)
    if not bucket or not prefix:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name="staging_cleaned",
            passed=False,
            metadata={"reason": "no staging prefix recorded"},
        )
    left = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=10).get("Contents", [])
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="staging_cleaned",
        passed=not left,
        metadata={STAGING_URI: staging_uri, "left_over": ", ".join(o["Key"] for o in left) or "none"},
    )
