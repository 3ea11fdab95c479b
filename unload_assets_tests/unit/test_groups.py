"""Which targets share a pair of ops: one group per partitioning, cut into batches on request."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from unload_assets.component import build_definitions
from unload_assets_tests.support.catalogue_samples import EVERY_DAY, write_catalogue
from unload_assets_tests.support.this_project import ENV

LATER = "partitioning: {type: daily, start_date: 2026-06-01}"


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UNLOAD_BATCH_SIZE", raising=False)


def _graphs(defs: dg.Definitions) -> dict[str, list[str]]:
    return {
        a.node_def.name: sorted(k.path[-1] for k in a.keys)
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and a.is_executable
    }


def test_one_pair_of_ops_per_partitioning_with_lineage_per_target(tmp_path):
    path = write_catalogue(
        tmp_path,
        [
            ("a", "sales", EVERY_DAY),
            ("b", "customers", EVERY_DAY),
            ("c", "sales", LATER),
            ("d", "sales", ""),
        ],
    )
    defs = build_definitions(path)
    assert _graphs(defs) == {
        "unloads_daily_from_2026_01_01": ["a", "b"],
        "unloads_daily_from_2026_06_01": ["c"],
        "unloads_unpartitioned": ["d"],
    }
    graph = defs.resolve_asset_graph()
    # Each target depends on its own tables only, although its group's unload op reads both.
    assert graph.get(dg.AssetKey(["s3", "a"])).parent_keys == {dg.AssetKey(["redshift", "public", "sales"])}
    assert graph.get(dg.AssetKey(["s3", "b"])).parent_keys == {
        dg.AssetKey(["redshift", "public", "customers"])
    }
    ops = {n.name for n in defs.resolve_job_def("daily_unloads_from_2026_01_01").graph.nodes}
    assert ops == {"unloads_daily_from_2026_01_01"}


def test_a_batch_size_cuts_each_group_into_pairs_of_ops_of_that_many_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLOAD_BATCH_SIZE", "2")
    path = write_catalogue(tmp_path, [(f"t{n}", "sales", EVERY_DAY) for n in range(5)] + [("u", "sales", "")])
    assert _graphs(build_definitions(path)) == {
        "unloads_daily_1": ["t0", "t1"],
        "unloads_daily_2": ["t2", "t3"],
        "unloads_daily_3": ["t4"],
        "unloads_unpartitioned": ["u"],
    }


def test_a_group_of_more_than_fifty_targets_is_cut_into_batches_of_fifty_unless_told_otherwise(
    tmp_path, monkeypatch
):
    path = write_catalogue(tmp_path, [(f"t{n:03d}", "sales", EVERY_DAY) for n in range(120)])
    batches = _graphs(build_definitions(path))
    assert {name: len(targets) for name, targets in batches.items()} == {
        "unloads_daily_1": 50,
        "unloads_daily_2": 50,
        "unloads_daily_3": 20,
    }
    assert batches["unloads_daily_2"][0] == "t050"  # in catalogue order
    # One target's run holds only its own batch's outputs and checks.
    job = build_definitions(path).resolve_implicit_global_asset_job_def()
    one = job.get_subset(asset_selection={dg.AssetKey(["s3", "t070"])})
    assert {node.name for node in one.graph.nodes} == {"unloads_daily_2"}
    monkeypatch.setenv("UNLOAD_BATCH_SIZE", "0")
    assert {name: len(t) for name, t in _graphs(build_definitions(path)).items()} == {"unloads_daily": 120}


WRONG = [("UNLOAD_BATCH_SIZE", "-1"), ("UNLOAD_MAX_CONCURRENT", "0"), ("UNLOAD_MAX_CONCURRENT", "51"),
         ("UNLOAD_MAX_CONCURRENT", "four")]  # fmt: skip


@pytest.mark.parametrize(("name", "raw"), WRONG)
def test_a_wrong_batch_size_or_concurrency_is_named_at_load(tmp_path, monkeypatch, name, raw):
    """This project's defs.yaml reads both from the environment: the attribute is named, and the value."""
    monkeypatch.setenv(name, raw)
    attribute = {"UNLOAD_BATCH_SIZE": "batch_size", "UNLOAD_MAX_CONCURRENT": "max_concurrent_unloads"}[name]
    with pytest.raises(Exception, match=f"(?s)field '{attribute}'.*{re.escape(raw)}"):
        build_definitions(write_catalogue(tmp_path, [("a", "sales", EVERY_DAY)]))


def test_the_upstream_tables_carry_their_full_name_for_dagsters_catalog(tmp_path):
    defs = build_definitions(write_catalogue(tmp_path, [("a", "sales", EVERY_DAY), ("b", "customers", "")]))
    graph = defs.resolve_asset_graph()
    names = {
        key.to_user_string(): graph.get(key).metadata.get("dagster/table_name")
        for key in graph.get_all_asset_keys()
        if key.path[0] == "redshift"
    }
    assert names == {
        "redshift/public/sales": "dev.public.sales",
        "redshift/public/customers": "dev.public.customers",
    }


def test_the_manifests_schema_becomes_a_column_schema_typed_as_redshift_types_it():
    from unload_assets.orchestration.rename_op import column_schema

    schema = {
        "elements": [
            {"name": "id", "type": {"base": "integer"}},
            {"name": "note", "type": {"base": "character varying", "max_length": 60}},
            {"name": "amount", "type": {"base": "numeric", "precision": 10, "scale": 2}},
        ]
    }
    found = column_schema(schema)
    assert found is not None
    assert [(c.name, c.type) for c in found.columns] == [
        ("id", "integer"), ("note", "character varying(60)"), ("amount", "numeric(10,2)"),
    ]  # fmt: skip
    assert column_schema(None) is None and column_schema({"elements": [{"type": {}}]}) is None
