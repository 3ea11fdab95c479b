"""One broken target costs that target alone: the rest load, with every schedule and sensor; the broken one
stays visible under its own key, marked not loaded, and fails with its reason when materialised. Strict
mode (CI) makes any problem fatal, its line first. The SQL is parsed with Redshift's grammar at load.
Needs no server."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from unload_assets.assembly import build_instance, read_instance_catalogue
from unload_assets.catalogue import CatalogueError, read_catalogue
from unload_assets.catalogue.load import inline_catalogue
from unload_assets.component import UnloadTargets
from unload_assets.configuration import CatalogueChoice
from unload_assets.statement.lineage import read_select
from unload_assets_tests.support.catalogue_samples import BAD, GOOD, KINDS
from unload_assets_tests.support.this_project import NAMES, configuration


def _write(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text(GOOD + entry)
    return path


@pytest.fixture
def config():
    return configuration()


@pytest.mark.parametrize(("kind", "entry", "told", "line"), BAD, ids=KINDS)
def test_a_broken_target_costs_only_itself(tmp_path, config, kind, entry, told, line):
    path = _write(tmp_path, entry)
    catalogue = read_catalogue(path)
    assert [t.name for t in catalogue.targets] == ["sales", "customers", "refunds"]
    [problem] = catalogue.problems
    assert str(problem).startswith(told) and str(problem).endswith(f"(line {line})"), str(problem)
    assert problem.line == line
    defs = build_instance(replace(config, catalogue=CatalogueChoice(path=path)), catalogue)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    loaded = {"s3/sales", "s3/customers", "s3/refunds"}
    assert loaded <= keys
    # Every job, schedule and sensor is there: the morning runs, and Slack is told.
    assert {j.name for j in defs.jobs or []} == {"daily_unloads", "unpartitioned_unloads"}
    assert {s.name for s in defs.schedules or []} == {
        "daily_unloads_at_0900",
        "unpartitioned_unloads_at_0900",
    }
    assert {s.name for s in defs.sensors or []} == {
        NAMES.success_sensor,
        NAMES.failure_sensor,
        NAMES.deadline_sensor,
    }
    graph = defs.resolve_asset_graph()
    if kind == "duplicate_name":  # the first entry of the name is the asset; the second is told on it
        assert "s3/orders" not in keys
        assert told in str(graph.get(dg.AssetKey(["s3", "sales"])).metadata["catalogue_problems"])
        return
    node = graph.get(dg.AssetKey(["s3", "orders"]))
    assert node.description.startswith("NOT LOADED: ") and told in node.description
    assert node.description.endswith("Orders.")  # its own description, as far as it could be read
    assert not any(dg.AssetKey(["s3", "orders"]) in job.asset_layer.selected_asset_keys
                   for job in (defs.resolve_job_def(j.name) for j in defs.jobs or []))  # fmt: skip
    result = dg.materialize(
        [
            a
            for a in defs.assets or []
            if isinstance(a, dg.AssetsDefinition) and dg.AssetKey(["s3", "orders"]) in a.keys
        ],
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "Target 'orders' is not loaded: " + told in failure.step_failure_data.user_failure_data.description


@pytest.mark.parametrize(("kind", "entry", "told", "line"), BAD, ids=KINDS)
def test_strict_makes_any_problem_fatal_with_it_on_the_first_line(tmp_path, config, kind, entry, told, line):
    path = _write(tmp_path, entry)
    strict = replace(config, strict=True, catalogue=CatalogueChoice(path=path))
    with pytest.raises(CatalogueError) as caught:
        read_instance_catalogue(strict)
    first = str(caught.value).splitlines()[0]
    assert first.startswith(told) and first.endswith(f"(line {line})"), first


def test_strict_is_the_attribute_or_the_environment(monkeypatch):
    attributes = {"name": "t", "redshift": {"host": "h", "database": "d"}, "s3": {"bucket": "b"}}
    assert not UnloadTargets.from_attributes_dict(attributes=attributes).configuration(Path.cwd()).strict
    assert (
        UnloadTargets.from_attributes_dict(attributes={**attributes, "strict": True})
        .configuration(Path.cwd())
        .strict
    )
    monkeypatch.setenv("UNLOAD_STRICT", "1")
    assert UnloadTargets.from_attributes_dict(attributes=attributes).configuration(Path.cwd()).strict


def test_a_bad_default_keeps_the_targets_that_inherit_it_from_loading(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text("defaults:\n  compression: rar\n" + GOOD.replace(
        "    key_template: exports/customers.csv\n",
        "    key_template: exports/customers.csv\n    compression: none\n"
    ))  # fmt: skip
    catalogue = read_catalogue(path)
    assert [t.name for t in catalogue.targets] == ["customers"]  # it sets its own
    [problem] = catalogue.problems  # told once
    assert str(problem).startswith("catalogue.yaml: defaults, field 'compression': Input should be")
    assert {entry.name for entry in catalogue.not_loaded} == {"sales", "refunds"}
    assert all(entry.problems == (problem,) for entry in catalogue.not_loaded)


def test_an_inherited_field_is_named_with_the_defaults_line_beside_the_targets_own(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text(
        "defaults:\n  format: json\n  header: true\n"
        "targets:\n  - name: a\n    description: d\n    sql: select 1 from t\n    key_template: a.json\n"
        "  - name: b\n    description: d\n    sql: select 1 from t\n    key_template: b.csv\n"
        "    format: csv\n"
    )
    [problem] = read_catalogue(path).problems
    assert str(problem) == (
        "catalogue.yaml: target 'a', field 'header' (inherited from defaults, line 3): FORMAT JSON can't be"
        " combined with HEADER (format: inherited from defaults, line 2) (line 5)"
    )


def test_an_inline_catalogue_is_located_by_its_defs_yaml_lines(tmp_path):
    defs_yaml = tmp_path / "defs.yaml"
    defs_yaml.write_text(textwrap.dedent("""\
        type: unload_assets.UnloadTargets
        attributes:
          name: inline
          targets:
            - name: ok
              description: Fine.
              sql: select 1 from public.t
              key_template: ok.csv
            - name: broken
              description: Broken.
              sql: select (1 from public.t
              key_template: broken.csv
        """))  # fmt: skip
    import yaml

    attributes = yaml.safe_load(defs_yaml.read_text())["attributes"]
    catalogue = inline_catalogue(None, attributes["targets"], defs_yaml=defs_yaml)
    [problem] = catalogue.problems
    assert problem.source == defs_yaml and problem.line == 11
    assert problem.located.startswith(f"{defs_yaml}:11: target 'broken', field 'sql': syntax error at line 1")
    assert [t.name for t in catalogue.targets] == ["ok"]


def test_a_select_without_readable_source_tables_is_a_lineage_warning(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text(
        "targets:\n  - name: one\n    description: d\n    sql: select 1 as x\n    key_template: one.csv\n"
    )
    catalogue = read_catalogue(path)
    assert not catalogue.problems and catalogue.lineage_notes == {
        "one": "no source table could be read from the SQL: the asset has no upstream lineage"
    }
    defs = build_instance(replace(configuration(), catalogue=CatalogueChoice(path=path)), catalogue)
    node = defs.resolve_asset_graph().get(dg.AssetKey(["s3", "one"]))
    assert node.metadata["lineage"] == catalogue.lineage_notes["one"]


# Redshift SQL a data team writes every day: none may be refused.
VALID_REDSHIFT = [
    "select a, row_number() over (partition by b order by c) as rn from t",
    "select * from t qualify row_number() over (partition by a order by b desc) = 1",
    "select region, listagg(name, ', ') within group (order by name) as names from t group by region",
    "select dateadd(day, -1, getdate()) as d, datediff(day, a, b), nvl(a, 0), nvl2(a, 1, 2) from t",
    "select top 10 * from public.sales order by amount desc",
    "with a as (select 1 as x), b as (select x from a) select * from b",
    "select approximate count(distinct user_id) from events",
    "select c.c_name, o.o_orderkey from customer_orders c, c.c_orders o",
    "select c.c_orders[0].o_orderkey from customer_orders c",
    "select json_extract_path_text(payload, 'a', 'b') from t where x ~ '^a' and y similar to 'b%'",
    "select convert_timezone('UTC', 'America/Los_Angeles', ts)::date from t",
    "select median(x), percentile_cont(0.5) within group (order by x) from t",
    "select decode(status, 1, 'open', 2, 'closed', 'other'), len(s), isnull(a, b) from t",
    "select * from t1 left join t2 using (id) where exists (select 1 from t3 where t3.id = t1.id)",
    "select * from (select a from t limit 10) q",
    "select a::varchar(10), cast(b as decimal(10, 2)), split_part(s, ',', 2) from t",
    "select 'O''Brien' as a, '\\\\' as b, '$$x$$' as c from t -- it's a comment",
    "select * from public.sales where sale_date = {{ partition_date }} and sold_at < {{ partition_end }}",
]
# Broken ones, each refused at its line and column.
BROKEN_REDSHIFT = [
    ("select a, b from (select a from t", 1, 33),
    ("select a\nfrom t\nwhere (x = 1", 3, 12),
    ("select from where", 1, 17),
    ("select a from t where", 1, 21),
    ("select sum(amount from t", 1, 22),
]


@pytest.mark.parametrize("sql", VALID_REDSHIFT)
def test_valid_redshift_is_never_refused(sql):
    assert read_select(sql).error is None


@pytest.mark.parametrize(("sql", "line", "column"), BROKEN_REDSHIFT)
def test_broken_sql_is_refused_at_its_line_and_column(sql, line, column):
    error = read_select(sql).error
    assert error is not None and (error.line, error.column) == (line, column), error
