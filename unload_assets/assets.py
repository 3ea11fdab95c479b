"""One graph-backed asset per catalogue target: op `unload_<target>` then op `rename_<target>`."""

import inspect
import logging
import re

import dagster as dg
from dagster_aws.s3 import S3Resource

from .lineage import upstream_tables
from .resources import RedshiftUnloadResource, UnloadSettings
from .stages import StagedUnload, rename_staged, run_unload
from .targets import UnloadTarget

GROUP = "unloads"
REDSHIFT_POOL = "redshift"

log = logging.getLogger(__name__)


def asset_key_for(target_name: str) -> dg.AssetKey:
    return dg.AssetKey(["s3", target_name])


def upstream_key(schema: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["redshift", schema, table])


def build_unload_asset(
    target: UnloadTarget, *, partitions_def: dg.PartitionsDefinition | None
) -> dg.AssetsDefinition:
    """The asset `s3/<target>`: lineage from the tables its SQL reads, UNLOAD, then the rename."""
    upstream = upstream_tables(target.sql)
    if not upstream:
        log.warning("Target %r: no upstream tables could be read from its SQL; lineage will be empty.", target.name)
    input_names = _input_names(upstream)

    unload_op = _unload_op(target, input_names)
    rename_op = _rename_op(target)

    def compose(**tables: object) -> object:
        return rename_op(unload_op(**tables))

    # Graph inputs are declared through the compose function's parameters, one per upstream table.
    compose.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in input_names]
    )
    compose.__name__ = target.name

    return dg.graph_asset(
        name=target.name,
        key_prefix=["s3"],
        description=target.description,
        group_name=GROUP,
        kinds={"redshift", "s3"},
        owners=list(target.owners),
        tags=dict(target.tags),
        partitions_def=partitions_def,
        ins={
            name: dg.AssetIn(key=upstream_key(schema, table), dagster_type=dg.Nothing)
            for name, (schema, table) in zip(input_names, upstream, strict=True)
        },
        metadata={
            "sql": dg.MetadataValue.md(f"```sql\n{target.sql.strip()}\n```"),
            "key_template": target.key_template,
            "format": target.format,
            "compression": target.compression,
            "on_split": target.on_split,
        },
    )(compose)


def external_table_specs(targets: list[UnloadTarget]) -> list[dg.AssetSpec]:
    """The Redshift tables the targets read, as external assets so the lineage graph shows them."""
    tables = sorted({table for target in targets for table in upstream_tables(target.sql)})
    return [
        dg.AssetSpec(
            key=upstream_key(schema, table),
            description=f"Redshift table {schema}.{table} (maintained outside this project).",
            group_name="redshift",
            kinds={"redshift", "table"},
        )
        for schema, table in tables
    ]


def _input_names(upstream: list[tuple[str, str]]) -> list[str]:
    names: list[str] = []
    for schema, table in upstream:
        base = re.sub(r"[^a-z0-9_]", "_", f"{schema}__{table}".lower())
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _unload_op(target: UnloadTarget, input_names: list[str]) -> dg.OpDefinition:
    @dg.op(
        name=f"unload_{target.name}",
        description=f"UNLOAD the query of '{target.name}' into a staging prefix of this run.",
        ins={name: dg.In(dg.Nothing) for name in input_names},
        pool=REDSHIFT_POOL,
        # Transient problems (connection drops, timeouts, S3 hiccups) are retried with backoff;
        # statement errors raise Failure(allow_retries=False) and stop at once.
        retry_policy=dg.RetryPolicy(
            max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
        ),
        tags={"kind": "redshift"},
    )
    def _unload(
        context: dg.OpExecutionContext,
        redshift: RedshiftUnloadResource,
        unload_settings: UnloadSettings,
        s3: S3Resource,
    ) -> StagedUnload:
        return run_unload(context, target, redshift=redshift, settings=unload_settings, s3=s3)

    return _unload


def _rename_op(target: UnloadTarget) -> dg.OpDefinition:
    @dg.op(
        name=f"rename_{target.name}",
        description=f"Finalise the staged files of '{target.name}' under '{target.key_template}'.",
        retry_policy=dg.RetryPolicy(
            max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
        ),
        tags={"kind": "s3"},
    )
    def _rename(context: dg.OpExecutionContext, staged: StagedUnload, s3: S3Resource) -> dg.Output[list[str]]:
        return rename_staged(context, target, staged, s3=s3)

    return _rename
