"""The unload assets: every target is its own asset `s3/<target>`, and one pair of ops serves a whole run.

Targets that share a partitions definition form one graph-backed multi-asset (the pattern `@dbt_assets`
uses): op `unload_<group>` runs the UNLOAD of every selected target, at most `max_concurrent_unloads`
at once, and hands the staged results to op `rename_<group>`, which renames each target's keys,
records its materialisation and evaluates its checks (`check_specs`) as soon as it is delivered. The
asset can be subset: materialising one target runs both ops for that target only.

Why one pair per run rather than per target: a step is a process that sets up Dagster (instance,
execution plan, resources, events) at ~0.7 s of CPU; with three steps per target that setup was
nine tenths of a morning (benchmarks/bench_morning.py). Inside the ops each target keeps what a step
of its own gave it: its own retries with backoff, its own failure (reported by name; the others are
delivered), its own output, metadata and checks.

The ops and graph are built from `OpDefinition`, `GraphDefinition` and `AssetsDefinition.from_graph`
rather than decorators, which would inspect the closures' signatures; what they would infer is
stated here instead.
"""

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.defs.checks import check_specs, evaluate_checks, evaluate_latest, failed_checks
from unload_assets.defs.names import asset_key_for, output_name, upstream_key
from unload_assets.defs.retries import RENAME_BACKOFF, UNLOAD_BACKOFF, attempt, describe, each
from unload_assets.defs.stages import StagedUnload, rename_staged, run_unload
from unload_assets.resources.redshift import scrub
from unload_assets.statement.lineage import upstream_tables

GROUP = "unloads"
REDSHIFT_POOL = "redshift"
KINDS = ("redshift", "s3")
RENAME_WORKERS = 8  # S3 copies and deletes: I/O bound, no cap but S3's
FAILED_TARGETS = "failed_targets"  # metadata of the rename step's Failure: {target: {stage, error}}

# A step that dies (killed, out of memory) is retried whole by Dagster; each target's own errors are
# retried inside the step (retries.py) and never reach this policy.
_STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)
# The unload op's output (what the rename op needs) is pickled to S3 under the staging prefix, never to
# a worker's disk; the assets' own outputs are Nothing (their value is the metadata): no IO manager runs.
HANDOFF_IO_MANAGER = "handoff_io_manager"
NOTHING_IN = dg.In(dg.Nothing)
# Built once and shared by every output: Dagster resolves an Out's type each time one is made.
_OPTIONAL_NOTHING = dg.Out(dg.Nothing, is_required=False)
_OPTIONAL_CHECK = dg.Out(is_required=False)
# What `kinds=` on an asset decorator writes: one tag per kind.
_KIND_TAGS = {f"dagster/kind/{kind}": "" for kind in KINDS}

log = logging.getLogger(__name__)
__all__ = ["FAILED_TARGETS", "HANDOFF_IO_MANAGER", "UnloadFailed", "asset_key_for", "build_unload_assets"]


@dataclass(frozen=True)
class UnloadFailed:
    """A target whose UNLOAD failed for good in run `run_id`: handed on so the rename op can say so."""

    run_id: str
    error: str


def build_unload_assets(
    targets: Sequence[UnloadTarget], *, name: str, partitions_def: dg.PartitionsDefinition | None
) -> dg.AssetsDefinition:
    """The assets `s3/<target>` of `targets` (one partitions definition), as one subsettable graph."""
    upstream = {t.name: upstream_tables(t.sql) for t in targets}
    for target in targets:
        if not upstream[target.name]:
            log.warning("Target %r: no upstream tables in its SQL; lineage will be empty.", target.name)
    tables = sorted({table for found in upstream.values() for table in found})
    input_names = dict(zip(tables, _input_names(tables), strict=True))
    specs = [spec for target in targets for spec in check_specs(target)]
    unload, rename = _unload_op(name, targets, list(input_names.values())), _rename_op(name, targets, specs)
    outputs = [output_name(t.name) for t in targets] + [spec.get_python_identifier() for spec in specs]
    graph = dg.GraphDefinition(
        name=f"unloads_{name}",
        description=f"UNLOAD then rename, for the {len(targets)} target(s) of group '{name}'.",
        node_defs=[unload, rename],
        dependencies={rename.name: {"staged": dg.DependencyDefinition(unload.name, "staged")}},
        # Each upstream table is a graph input feeding the unload op's Nothing input of the same name.
        input_mappings=[
            dg.InputMapping(graph_input_name=n, mapped_node_name=unload.name, mapped_node_input_name=n)
            for n in input_names.values()
        ],
        output_mappings=[
            dg.OutputMapping(graph_output_name=o, mapped_node_name=rename.name, mapped_node_output_name=o)
            for o in outputs
        ],
    )
    by_output = {output_name(t.name): t for t in targets}
    return dg.AssetsDefinition.from_graph(
        graph,
        keys_by_input_name={n: upstream_key(*table) for table, n in input_names.items()},
        keys_by_output_name={o: asset_key_for(t.name) for o, t in by_output.items()},
        internal_asset_deps={
            o: {upstream_key(*table) for table in upstream[t.name]} for o, t in by_output.items()
        },
        partitions_def=partitions_def,
        group_name=GROUP,
        descriptions_by_output_name={o: t.description for o, t in by_output.items()},
        owners_by_output_name={o: list(t.owners) for o, t in by_output.items() if t.owners},
        tags_by_output_name={o: {**t.tags, **_KIND_TAGS} for o, t in by_output.items()},
        metadata_by_output_name={o: _definition_metadata(t) for o, t in by_output.items()},
        can_subset=True,
        check_specs=specs,
    )


def external_table_specs(targets: list[UnloadTarget], *, database: str | None = None) -> list[dg.AssetSpec]:
    """The Redshift tables the targets read, as external assets so the lineage graph shows them, each
    with its `dagster/table_name` (`<database>.<schema>.<table>`) for Dagster's catalog."""
    tables = sorted({table for target in targets for table in upstream_tables(target.sql)})
    return [
        dg.AssetSpec(
            key=upstream_key(schema, table),
            description=f"Redshift table {schema}.{table} (maintained outside this project).",
            group_name="redshift",
            kinds={"redshift", "table"},
            metadata={"dagster/table_name": ".".join(p for p in (database, schema, table) if p)},
        )
        for schema, table in tables
    ]


def _definition_metadata(target: UnloadTarget) -> dict[str, Any]:
    return {
        "sql": dg.MetadataValue.md(f"```sql\n{target.sql.strip()}\n```"),
        "key_template": target.key_template,
        "format": target.format,
        "compression": target.compression,
        "on_split": target.on_split,
    }


def _input_names(tables: list[tuple[str, str]]) -> list[str]:
    names: list[str] = []
    for schema, table in tables:
        base = re.sub(r"[^a-z0-9_]", "_", f"{schema}__{table}".lower())
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _said(exc: Exception, settings: Any) -> str:
    """One line of `exc` for the log, the failure and Slack, without the UNLOAD secrets."""
    return scrub(describe(exc), settings.secrets())


def _selected(context: dg.OpExecutionContext, targets: Sequence[UnloadTarget]) -> list[UnloadTarget]:
    """The targets this run materialises (a subset when one target is materialised from the UI)."""
    keys = context.selected_asset_keys
    return [t for t in targets if asset_key_for(t.name) in keys]


def _unload_op(name: str, targets: Sequence[UnloadTarget], input_names: list[str]) -> dg.OpDefinition:
    def compute(context: dg.OpExecutionContext, _: Mapping[str, Any]) -> Iterator[dg.Output[dict]]:
        res = context.resources
        settings = res.unload_settings

        def unload(target: UnloadTarget) -> StagedUnload:
            return attempt(
                lambda number: run_unload(
                    context, target, redshift=res.redshift, settings=settings, s3=res.s3, attempt=number
                ),
                backoff=UNLOAD_BACKOFF,
                what=f"UNLOAD of '{target.name}'",
                log=context.log.warning,
            )

        staged: dict[str, StagedUnload | UnloadFailed] = {}
        for outcome in each(
            _selected(context, targets),
            unload,
            workers=settings.max_concurrent_unloads,
            name=lambda t: t.name,
            describe_error=lambda exc: _said(exc, settings),
        ):
            target = outcome.item.name
            if outcome.error is not None:
                context.log.error(f"UNLOAD of '{target}' failed: {outcome.error}")
                staged[target] = UnloadFailed(run_id=context.run_id, error=outcome.error)
            else:
                staged[target] = outcome.result  # type: ignore[assignment]
        yield dg.Output(staged, "staged")

    return dg.OpDefinition(
        compute_fn=compute,
        name=f"unload_{name}",
        description="UNLOAD the query of each selected target into a staging prefix of this run "
        "(at most `max_concurrent_unloads` at once, each retried on its own).",
        ins=dict.fromkeys(input_names, NOTHING_IN),
        outs={"staged": dg.Out(dict, io_manager_key=HANDOFF_IO_MANAGER)},
        required_resource_keys={"redshift", "unload_settings", "s3"},
        pool=REDSHIFT_POOL,
        retry_policy=_STEP_RETRY,
        tags={"kind": "redshift"},
    )


def _rename_op(name: str, targets: Sequence[UnloadTarget], specs: list[dg.AssetCheckSpec]) -> dg.OpDefinition:
    def compute(context: dg.OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Any]:
        client, settings = context.resources.s3, context.resources.unload_settings
        staged: dict[str, StagedUnload | UnloadFailed] = inputs["staged"]
        failed: dict[str, dict[str, str]] = {}
        ready: list[tuple[UnloadTarget, StagedUnload]] = []
        for target in _selected(context, targets):
            handed = staged.get(target.name)
            if isinstance(handed, StagedUnload):
                ready.append((target, handed))
            elif isinstance(handed, UnloadFailed):
                again = "" if handed.run_id == context.run_id else (
                    f" (in run {handed.run_id[:8]}, not run again: re-execute from asset failure to run it)"
                )  # fmt: skip
                failed[target.name] = {"stage": "unload", "error": handed.error + again}
            else:
                failed[target.name] = {"stage": "unload", "error": "the unload step handed nothing on"}

        def rename(item: tuple[UnloadTarget, StagedUnload]) -> tuple[dict[str, Any], list[Any]]:
            target, handed = item
            metadata = attempt(
                lambda _: rename_staged(context, target, handed, s3=client),
                backoff=RENAME_BACKOFF,
                what=f"rename of '{target.name}'",
                log=context.log.warning,
            )
            try:
                results = list(evaluate_checks(context, target, client, settings, metadata))
            except Exception as exc:  # delivered all the same: the checks say they could not judge it
                results = failed_checks(context, target, _said(exc, settings))
            return metadata, results

        for outcome in each(
            ready,
            rename,
            workers=RENAME_WORKERS,
            name=lambda item: item[0].name,
            describe_error=lambda exc: _said(exc, settings),
        ):
            target = outcome.item[0]
            if outcome.error is not None:
                context.log.error(f"Rename of '{target.name}' failed: {outcome.error}")
                failed[target.name] = {"stage": "rename", "error": outcome.error}
                continue
            metadata, results = outcome.result  # type: ignore[misc]
            yield dg.Output(None, output_name(target.name), metadata=metadata)
            yield from results
        # Checks selected without their asset (a checks-only run): judge the latest materialisation.
        checked_alone = {key.asset_key for key in context.selected_asset_check_keys}
        checked_alone -= set(context.selected_asset_keys)
        for target in targets:
            if asset_key_for(target.name) in checked_alone:
                yield from evaluate_latest(context, target, client, settings)
        if failed:
            lines = [f"{t} ({f['stage']}): {f['error']}" for t, f in sorted(failed.items())]
            raise dg.Failure(
                description=f"{len(failed)} target(s) not delivered: " + "; ".join(lines),
                metadata={FAILED_TARGETS: dg.MetadataValue.json(failed)},
                allow_retries=False,
            )

    outs = {output_name(t.name): _OPTIONAL_NOTHING for t in targets}
    outs.update({spec.get_python_identifier(): _OPTIONAL_CHECK for spec in specs})
    return dg.OpDefinition(
        compute_fn=compute,
        name=f"rename_{name}",
        description="Rename each delivered target's staged files under its key template, then check it.",
        ins={"staged": dg.In(dict)},
        outs=outs,
        required_resource_keys={"s3", "unload_settings"},
        retry_policy=_STEP_RETRY,
        tags={"kind": "s3"},
    )


def groups(
    targets: list[UnloadTarget], timezone: str, batch_size: int = 0
) -> list[tuple[str, dg.PartitionsDefinition | None, list[UnloadTarget]]]:
    """Targets by partitions definition (one multi-asset each): `daily` (or `daily_from_<start>` when
    targets start on different days) and `unpartitioned`."""
    by_start: dict[date | None, list[UnloadTarget]] = {}
    for target in targets:
        start = target.partitioning.start_date if target.partitioning.type == "daily" else None
        by_start.setdefault(start, []).append(target)
    starts = sorted(s for s in by_start if s is not None)
    found: list[tuple[str, dg.PartitionsDefinition | None, list[UnloadTarget]]] = [
        (
            "daily" if len(starts) == 1 else f"daily_from_{start:%Y_%m_%d}",
            dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=timezone),
            by_start[start],
        )
        for start in starts
    ]
    if None in by_start:
        found.append(("unpartitioned", None, by_start[None]))
    size = batch_size
    if not size:
        return found
    return [
        (f"{name}_{n // size + 1}", partitions_def, group[n : n + size])
        for name, partitions_def, group in found
        if len(group) > size
        for n in range(0, len(group), size)
    ] + [g for g in found if len(g[2]) <= size]
