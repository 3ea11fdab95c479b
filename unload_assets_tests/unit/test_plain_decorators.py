"""assets.py builds its ops and graph from OpDefinition and GraphDefinition rather than the decorators,
to skip their signature inspection. Here the same group is written with @op and @graph (and the same
AssetsDefinition.from_graph), and what Dagster sees of both must be the same: assets, deps, checks,
partitions, metadata, ops, their inputs, outputs, pool, retry policy and resources. Needs no server."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

from unload_assets.catalogue import load_catalogue
from unload_assets.component import build_definitions
from unload_assets.orchestration.checks import check_specs
from unload_assets_tests.support.catalogue_samples import EVERY_DAY, write_catalogue
from unload_assets_tests.support.this_project import ENV, NAMES, REDSHIFT_POOL


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _by_decorators(built: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The same graph multi-asset, written as a person would with @op and @graph_multi_asset."""
    unload_def, rename_def = (
        built.node_def.node_named(n).definition for n in (NAMES.unload_op("daily"), NAMES.rename_op("daily"))
    )
    specs = list(built.check_specs)
    names = [o for o in rename_def.output_dict if o.startswith("s3__") and o in built.keys_by_output_name]
    retry = unload_def.retry_policy

    @dg.op(
        name=NAMES.unload_op("daily"),
        ins={name: dg.In(dg.Nothing) for name in unload_def.input_dict},
        out={"staged": dg.Out(dict, io_manager_key=NAMES.handoff)},
        required_resource_keys={NAMES.redshift, NAMES.settings, NAMES.s3},
        pool=REDSHIFT_POOL,
        retry_policy=retry,
        tags={"kind": "redshift"},
        description=unload_def.description,
    )
    def unload(context) -> dict:  # type: ignore[no-untyped-def]
        return {}

    @dg.op(
        name=NAMES.rename_op("daily"),
        out={
            **{name: dg.Out(dg.Nothing, is_required=False) for name in names},
            **{spec.get_python_identifier(): dg.Out(is_required=False) for spec in specs},
        },
        required_resource_keys={NAMES.s3, NAMES.settings},
        retry_policy=retry,
        tags={"kind": "s3"},
        description=rename_def.description,
    )
    def rename(context, staged: dict):  # type: ignore[no-untyped-def]
        return None

    @dg.graph(
        name="unloads_daily",
        ins={name: dg.GraphIn() for name in unload_def.input_dict},
        out={name: dg.GraphOut() for name in rename_def.output_dict},
    )
    def unloads_daily(**tables: Any):  # type: ignore[no-untyped-def]
        outputs = rename(unload(**tables))
        return {name: getattr(outputs, name) for name in rename_def.output_dict}

    keys, spec = built.keys_by_output_name, built.get_asset_spec
    # Per-target lineage: what the decorators cannot say of one graph, from_graph's internal_asset_deps does.
    return dg.AssetsDefinition.from_graph(
        unloads_daily,
        keys_by_input_name=dict(built.keys_by_input_name),
        keys_by_output_name={name: keys[name] for name in names},
        internal_asset_deps={name: {d.asset_key for d in spec(keys[name]).deps} for name in names},
        partitions_def=built.partitions_def,
        group_name="unloads",
        descriptions_by_output_name={name: spec(keys[name]).description or "" for name in names},
        owners_by_output_name={name: list(spec(keys[name]).owners) for name in names},
        tags_by_output_name={name: dict(spec(keys[name]).tags) for name in names},
        metadata_by_output_name={name: dict(spec(keys[name]).metadata) for name in names},
        can_subset=True,
        check_specs=specs,
    )


def _seen(assets: dg.AssetsDefinition) -> dict[str, Any]:
    none = dg.ResourceDefinition.none_resource()
    resources = {NAMES.redshift: none, NAMES.s3: none, NAMES.settings: none, NAMES.handoff: dg.mem_io_manager}
    defs = dg.Definitions(assets=[assets], resources=resources)
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    ops = {}
    for node in job.graph.node_named("unloads_daily").definition.nodes:  # type: ignore[attr-defined]
        op = node.definition
        ops[op.name] = {
            "ins": {n: i.dagster_type.key for n, i in op.input_dict.items()},
            "outs": {
                n: (o.dagster_type.key, o.is_required, o.io_manager_key) for n, o in op.output_dict.items()
            },
            "pool": op.pool,
            "retry": op.retry_policy,
            "resources": sorted(op.required_resource_keys),
            "tags": dict(op.tags),
        }
    return {
        "assets": {
            key.to_user_string(): {
                "deps": sorted(k.to_user_string() for k in graph.get(key).parent_keys),
                "group": graph.get(key).group_name,
                "tags": graph.get(key).tags,
                "owners": graph.get(key).owners,
                "description": graph.get(key).description,
                "metadata": sorted(graph.get(key).metadata),
                "partitions": str(graph.get(key).partitions_def),
                "checks": sorted(k.name for k in graph.get(key).check_keys),
            }
            for key in sorted(assets.keys, key=lambda k: k.to_user_string())
        },
        "subsettable": assets.can_subset,
        "ops": ops,
    }


def test_the_built_group_is_what_the_plain_decorators_build(tmp_path):
    specs = [
        ("a", "sales", EVERY_DAY),
        ("b", "customers", EVERY_DAY),
        ("c", "sales", EVERY_DAY),
    ]
    catalogue = write_catalogue(tmp_path, specs)
    [built] = [a for a in build_definitions(catalogue).assets or [] if isinstance(a, dg.AssetsDefinition)
               and a.is_executable]  # fmt: skip
    seen = _seen(built)
    assert seen == _seen(_by_decorators(built))
    # Not vacuous: three assets, each with its own lineage and its checks, and both ops.
    assert sorted(seen["assets"]) == ["s3/a", "s3/b", "s3/c"]
    assert seen["assets"]["s3/b"]["deps"] == ["redshift/public/customers"]
    target_a = load_catalogue(catalogue).targets[0]
    assert seen["assets"]["s3/a"]["checks"] == sorted(c.key.name for c in check_specs(NAMES, target_a))
    assert sorted(seen["ops"]) == [NAMES.rename_op("daily"), NAMES.unload_op("daily")]
