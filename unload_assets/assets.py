"""One graph-backed asset per catalogue target: op `unload_<target>` then op `rename_<target>`.

The ops, graph and asset are built from `OpDefinition`, `GraphDefinition` and
`AssetsDefinition.from_graph` rather than `@op` and `@graph_asset`: those decorators inspect every
closure's signature and type hints (twice per op) and trace the composition, which is most of the
factory's cost at 1000 targets. What they would infer is stated here instead; the definitions
and the snapshot the UI sees are the same.
"""

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from .lineage import upstream_tables
from .stages import StagedUnload, rename_staged, run_unload
from .targets import UnloadTarget

GROUP = "unloads"
REDSHIFT_POOL = "redshift"
KINDS = ("redshift", "s3")

# Transient problems (connection drops, timeouts, S3 hiccups) are retried with backoff;
# statement errors raise Failure(allow_retries=False) and stop at once.
_UNLOAD_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
_RENAME_RETRY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# The unload op's output (what the rename op needs) is pickled to S3 under the staging prefix, never to
# a worker's disk; the asset's own output is Nothing (its value is the metadata), so no IO manager runs.
HANDOFF_IO_MANAGER = "handoff_io_manager"
# Built once and shared by every op: Dagster resolves an In's or Out's type each time one is made.
NOTHING_IN = dg.In(dg.Nothing)
_STAGED_IN = dg.In(StagedUnload)
_STAGED_OUT = dg.Out(StagedUnload, io_manager_key=HANDOFF_IO_MANAGER)
_DELIVERED_OUT = dg.Out(dg.Nothing)
# What `kinds=` on an asset decorator writes: one tag per kind.
_KIND_TAGS = {f"dagster/kind/{kind}": "" for kind in KINDS}

log = logging.getLogger(__name__)


def asset_key_for(target_name: str) -> dg.AssetKey:
    return dg.AssetKey(["s3", target_name])


def handoff_prefix(staging_prefix: str) -> str:
    """Where the handoff pickles live: `<staging>/_dagster/storage/<run id>/<step>/result`."""
    return "/".join(p for p in (staging_prefix.strip("/"), "_dagster") if p)


def upstream_key(schema: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["redshift", schema, table])


def build_unload_asset(
    target: UnloadTarget, *, partitions_def: dg.PartitionsDefinition | None
) -> dg.AssetsDefinition:
    """The asset `s3/<target>`: lineage from the tables its SQL reads, UNLOAD, then the rename."""
    upstream = upstream_tables(target.sql)
    if not upstream:
        log.warning(
            "Target %r: no upstream tables could be read from its SQL; lineage will be empty.", target.name
        )
    input_names = _input_names(upstream)
    key = asset_key_for(target.name)
    unload, rename = _unload_op(target, input_names), _rename_op(target)
    graph = dg.GraphDefinition(
        name=key.to_python_identifier(),
        description=target.description,
        node_defs=[unload, rename],
        dependencies={rename.name: {"staged": dg.DependencyDefinition(unload.name)}},
        # Each upstream table is a graph input feeding the unload op's Nothing input of the same name.
        input_mappings=[
            dg.InputMapping(graph_input_name=name, mapped_node_name=unload.name, mapped_node_input_name=name)
            for name in input_names
        ],
        output_mappings=[
            dg.OutputMapping(
                graph_output_name="result", mapped_node_name=rename.name, mapped_node_output_name="result"
            )
        ],
    )
    return dg.AssetsDefinition.from_graph(
        graph,
        keys_by_input_name={
            name: upstream_key(schema, table)
            for name, (schema, table) in zip(input_names, upstream, strict=True)
        },
        keys_by_output_name={"result": key},
        partitions_def=partitions_def,
        group_name=GROUP,
        descriptions_by_output_name={"result": target.description},
        owners_by_output_name={"result": list(target.owners)} if target.owners else None,
        tags_by_output_name={"result": {**target.tags, **_KIND_TAGS}},
        metadata_by_output_name={
            "result": {
                "sql": dg.MetadataValue.md(f"```sql\n{target.sql.strip()}\n```"),
                "key_template": target.key_template,
                "format": target.format,
                "compression": target.compression,
                "on_split": target.on_split,
            }
        },
    )


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
    def compute(context: dg.OpExecutionContext, _: Mapping[str, Any]) -> Iterator[dg.Output[StagedUnload]]:
        # Public resource access: `context.resources.s3` is the boto3 client S3Resource hands to ops.
        res = context.resources
        yield dg.Output(
            run_unload(context, target, redshift=res.redshift, settings=res.unload_settings, s3=res.s3)
        )

    return dg.OpDefinition(
        compute_fn=compute,
        name=f"unload_{target.name}",
        description=f"UNLOAD the query of '{target.name}' into a staging prefix of this run.",
        ins=dict.fromkeys(input_names, NOTHING_IN),
        outs={"result": _STAGED_OUT},
        required_resource_keys={"redshift", "unload_settings", "s3"},
        pool=REDSHIFT_POOL,
        retry_policy=_UNLOAD_RETRY,
        tags={"kind": "redshift"},
    )


def _rename_op(target: UnloadTarget) -> dg.OpDefinition:
    def compute(context: dg.OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[dg.Output[None]]:
        yield rename_staged(context, target, inputs["staged"], s3=context.resources.s3)

    return dg.OpDefinition(
        compute_fn=compute,
        name=f"rename_{target.name}",
        description=f"Finalise the staged files of '{target.name}' under '{target.key_template}'.",
        ins={"staged": _STAGED_IN},
        outs={"result": _DELIVERED_OUT},
        required_resource_keys={"s3"},
        retry_policy=_RENAME_RETRY,
        tags={"kind": "s3"},
    )
