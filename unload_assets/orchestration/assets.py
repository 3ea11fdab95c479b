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

import re
from collections.abc import Sequence
from datetime import date, time
from typing import Any

import dagster as dg

from unload_assets.catalogue import Catalogue, NotLoaded, UnloadTarget
from unload_assets.configuration import Configuration
from unload_assets.deadline import freshness_window, parse_deliver_by
from unload_assets.names import Names
from unload_assets.orchestration.checks import check_specs
from unload_assets.orchestration.rename_op import rename_op
from unload_assets.orchestration.unload_op import unload_op
from unload_assets.statement.lineage import upstream_tables

KINDS = ("redshift", "s3")
# What `kinds=` on an asset decorator writes: one tag per kind.
_KIND_TAGS = {f"dagster/kind/{kind}": "" for kind in KINDS}
NOT_LOADED_TAG = "unload_assets/not_loaded"

__all__ = ["build_unload_assets", "external_table_specs", "groups", "not_loaded_assets"]


def build_unload_assets(
    config: Configuration,
    targets: Sequence[UnloadTarget],
    *,
    group: str,
    partitions_def: dg.PartitionsDefinition | None,
    catalogue: Catalogue | None = None,
) -> dg.AssetsDefinition:
    """The assets `<prefix>/<target>` of `targets` (one partitions definition), as one subsettable graph;
    a target's `deliver_by` (a local time of the instance's time zone) is its freshness policy."""
    names = config.names
    upstream = {t.name: upstream_tables(t.sql) for t in targets}
    tables = sorted({table for found in upstream.values() for table in found})
    input_names = dict(zip(tables, _input_names(tables), strict=True))
    specs = [spec for target in targets for spec in check_specs(names, target)]
    unload = unload_op(config, group, targets, list(input_names.values()))
    rename = rename_op(config, group, targets, specs)
    outputs = [names.output_name(t.name) for t in targets] + [spec.get_python_identifier() for spec in specs]
    graph = dg.GraphDefinition(
        name=names.graph(group),
        description=f"UNLOAD then rename, for the {len(targets)} target(s) of group '{group}'.",
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
    by_output = {names.output_name(t.name): t for t in targets}
    assets = dg.AssetsDefinition.from_graph(
        graph,
        keys_by_input_name={n: names.upstream_key(*table) for table, n in input_names.items()},
        keys_by_output_name={o: names.asset_key(t.name) for o, t in by_output.items()},
        internal_asset_deps={
            o: {names.upstream_key(*table) for table in upstream[t.name]} for o, t in by_output.items()
        },
        partitions_def=partitions_def,
        group_name=config.group_name,
        descriptions_by_output_name={o: t.description for o, t in by_output.items()},
        owners_by_output_name={o: list(t.owners) for o, t in by_output.items() if t.owners},
        tags_by_output_name={o: {**t.tags, **_KIND_TAGS} for o, t in by_output.items()},
        metadata_by_output_name={o: _definition_metadata(t, catalogue) for o, t in by_output.items()},
        can_subset=True,
        check_specs=specs,
        # A backfill of a year is ceil(365 / days) runs, not 365: the ops serve a range of days, each
        # day its own UNLOAD, rename, materialisation and checks (unload_op.py, rename_op.py).
        backfill_policy=(
            dg.BackfillPolicy.multi_run(max_partitions_per_run=config.backfill_days_per_run)
            if partitions_def is not None
            else None
        ),
    )
    policies = {
        names.asset_key(t.name): freshness_policy(t.deliver_by, config.timezone, config.run_at)
        for t in targets
        if t.deliver_by
    }
    if not policies:
        return assets
    return assets.map_asset_specs(
        lambda spec: (
            spec.replace_attributes(freshness_policy=policies[spec.key]) if spec.key in policies else spec
        )
    )


def freshness_policy(deliver_by: str, timezone: str, run_at: time) -> dg.FreshnessPolicy:
    """`deliver_by` as the UI shows it: delivered between the morning run and the deadline, every day."""
    cron, since_run = freshness_window(parse_deliver_by(deliver_by, run_at), run_at)
    return dg.FreshnessPolicy.cron(deadline_cron=cron, lower_bound_delta=since_run, timezone=timezone)


def external_table_specs(
    names: Names, targets: list[UnloadTarget], *, database: str | None = None
) -> list[dg.AssetSpec]:
    """The Redshift tables the targets read, as external assets so the lineage graph shows them, each
    with its `dagster/table_name` (`<database>.<schema>.<table>`) for Dagster's catalog."""
    tables = sorted({table for target in targets for table in upstream_tables(target.sql)})
    return [
        dg.AssetSpec(
            key=names.upstream_key(schema, table),
            description=f"Redshift table {schema}.{table} (maintained outside this project).",
            group_name="redshift",
            kinds={"redshift", "table"},
            metadata={"dagster/table_name": ".".join(p for p in (database, schema, table) if p)},
        )
        for schema, table in tables
    ]


def _definition_metadata(target: UnloadTarget, catalogue: Catalogue | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "sql": dg.MetadataValue.md(f"```sql\n{target.sql.strip()}\n```"),
        "key_template": target.key_template,
        "format": target.format,
        "compression": target.compression,
        "on_split": target.on_split,
    }
    if catalogue is not None and (note := catalogue.lineage_notes.get(target.name)):
        found["lineage"] = note
    if catalogue is not None and (problems := catalogue.problems_of(target.name)):
        # A second entry of this name: this asset is the first one's, and the second is not loaded.
        found["catalogue_problems"] = "\n".join(str(problem) for problem in problems)
    return found


def not_loaded_assets(config: Configuration, entries: Sequence[NotLoaded]) -> list[dg.AssetsDefinition]:
    """A catalogue entry that did not load keeps its asset, marked as not loaded: its description and
    metadata say why, and materialising it fails at once with that reason. It is in no job."""
    names = config.names
    found = []
    for entry in entries:
        reason = entry.reason
        found.append(
            dg.asset(
                key=names.asset_key(entry.name),
                name=None,
                op_tags={"kind": "s3"},
                group_name=config.group_name,
                description=f"NOT LOADED: {reason}"
                + (f"\n\n{entry.description}" if entry.description else ""),
                kinds=set(KINDS),
                tags={NOT_LOADED_TAG: "true"},
                metadata={
                    "not_loaded": reason,
                    "catalogue": f"{entry.problems[0].source}:{entry.line or ''}",
                },
            )(_refusal(f"not_loaded_{names.instance}_{entry.name}", entry.name, reason))
        )
    return found


def _refusal(op_name: str, target: str, reason: str) -> Any:
    def refuse(context: dg.AssetExecutionContext) -> None:
        raise dg.Failure(description=f"Target '{target}' is not loaded: {reason}", allow_retries=False)

    refuse.__name__ = op_name
    return refuse


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
