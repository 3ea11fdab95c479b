"""Checks on each unload asset's latest materialisation: what it recorded is what S3 holds."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from .assets import asset_key_for
from .targets import UnloadTarget


def build_unload_checks(target: UnloadTarget) -> dg.AssetChecksDefinition:
    key = asset_key_for(target.name)

    @dg.multi_asset_check(
        name=f"{target.name}_delivery_checks",
        specs=[
            dg.AssetCheckSpec("final_objects_present", asset=key, description="Final objects exist with the recorded sizes."),
            dg.AssetCheckSpec("has_rows", asset=key, description="The UNLOAD wrote at least one row (warns)."),
            dg.AssetCheckSpec("staging_cleaned", asset=key, description="No staged file is left behind."),
        ],
        can_subset=True,
    )
    def _checks(context: dg.AssetCheckExecutionContext, s3: S3Resource) -> Iterator[dg.AssetCheckResult]:
        event = context.instance.get_latest_materialization_event(key)
        if event is None or event.asset_materialization is None:
            for name in ("final_objects_present", "has_rows", "staging_cleaned"):
                yield dg.AssetCheckResult(
                    asset_key=key, check_name=name, passed=False, metadata={"reason": "never materialised"}
                )
            return
        metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        client = s3.get_client()
        bucket = str(metadata["s3_uri"])[len("s3://") :].split("/", 1)[0]
        yield _objects_present(key, client, bucket, metadata)
        rows = int(metadata.get("rows", 0))
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="has_rows",
            passed=rows > 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows": rows, "partition": str(metadata.get("partition"))},
        )
        yield _staging_cleaned(key, client, str(metadata.get("staging_prefix", "")))

    return _checks


def _objects_present(key: dg.AssetKey, client: Any, bucket: str, metadata: dict[str, Any]) -> dg.AssetCheckResult:
    problems: list[str] = []
    for obj in metadata.get("final_objects") or []:
        try:
            size = client.head_object(Bucket=bucket, Key=obj["key"])["ContentLength"]
        except client.exceptions.ClientError as exc:
            problems.append(f"{obj['key']}: {exc.response.get('Error', {}).get('Code', 'missing')}")
            continue
        if size != obj["size"]:
            problems.append(f"{obj['key']}: {size} bytes in S3, {obj['size']} recorded")
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="final_objects_present",
        passed=not problems,
        metadata={"checked": len(metadata.get("final_objects") or []), "problems": "\n".join(problems) or "none"},
    )


def _staging_cleaned(key: dg.AssetKey, client: Any, staging_uri: str) -> dg.AssetCheckResult:
    bucket, _, prefix = staging_uri[len("s3://") :].partition("/")
    if not bucket or not prefix:
        return dg.AssetCheckResult(asset_key=key, check_name="staging_cleaned", passed=False,
                                   metadata={"reason": "no staging prefix recorded"})
    left = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=10).get("Contents", [])
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="staging_cleaned",
        passed=not left,
        metadata={"staging_prefix": staging_uri, "left_over": ", ".join(o["Key"] for o in left) or "none"},
    )
