"""The UnloadTargets component: this project loads through it, and a scratch project uses it from its own
`defs.yaml` (inline catalogue, or a file beside it) with `dg check defs` and `dg list defs`. No server."""

from __future__ import annotations

from pathlib import Path

import pytest

from unload_assets.assembly import build_definitions
from unload_assets.catalogue import PACKAGED_CATALOGUE
from unload_assets_tests.support.scratch_project import DAILY_SQL, dg, listed, make_project
from unload_assets_tests.unit.test_definitions_snapshot import ENV, described

INLINE = f"""\
type: unload_assets.component.UnloadTargets
attributes:
  defaults:
    owners: ["team:finance"]
  targets:
    - name: sales_export
      description: Yesterday's sales for finance.
      sql: "{DAILY_SQL}"
      key_template: "finance/sales_{{date}}.csv"
      partitioning: {{type: daily, start_date: "2026-01-01"}}
"""
BY_FILE = """\
type: unload_assets.component.UnloadTargets
attributes:
  catalogue: exports.yaml
"""
EXPORTS = f"""\
targets:
  - name: customer_export
    description: Every customer.
    sql: select * from public.customers
    key_template: crm/customers.csv
  - name: daily_sales
    description: Yesterday's sales.
    sql: "{DAILY_SQL}"
    key_template: "sales/{{date}}/sales.csv.gz"
    compression: gzip
    partitioning: {{type: daily, start_date: "2026-01-01"}}
"""


def test_this_project_loads_through_its_defs_yaml_exactly_as_the_assembly_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`definitions.py` (the defs folder and its component) and `build_definitions` give one result."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UNLOAD_TARGETS_FILE", raising=False)
    import dagster as dg

    from unload_assets import definitions

    loaded = dg.load_from_defs_folder(path_within_project=Path(definitions.__file__).parent)
    assert described(loaded) == described(build_definitions(PACKAGED_CATALOGUE))


def test_dg_checks_and_lists_this_project() -> None:
    """`dg check defs` and `dg list defs` in this repository: the packaged catalogue's exports."""
    repo = Path(__file__).resolve().parents[2]
    env = {**ENV, "UNLOAD_TARGETS_FILE": ""}
    checked = dg(repo, "check", "defs", env=env)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert {a["asset_key"] for a in listed(repo, env)["assets"]} >= {"s3/sales_data", "s3/customers_snapshot"}


def test_a_scratch_project_uses_the_component_with_an_inline_catalogue(tmp_path: Path) -> None:
    root = make_project(tmp_path, INLINE)
    checked = dg(root, "check", "defs", env=ENV)
    assert checked.returncode == 0, checked.stderr[-3000:]
    found = listed(root, ENV)
    keys = {a["asset_key"] for a in found["assets"]}
    assert keys == {"s3/sales_export", "redshift/public/sales"}
    [asset] = [a for a in found["assets"] if a["asset_key"] == "s3/sales_export"]
    assert asset["owners"] == [{"team": "finance"}] and asset["dependency_keys"] == ["redshift/public/sales"]
    assert {c["name"] for c in found["asset_checks"]} >= {"final_objects_present", "has_rows"}
    assert [s["name"] for s in found["schedules"]] == ["daily_unloads_at_0900"]
    assert {s["name"] for s in found["sensors"]} == {
        "unload_success_to_slack",
        "unload_failure_to_slack",
        "unload_deadline_to_slack",
    }


def test_a_scratch_project_uses_the_component_with_a_catalogue_file(tmp_path: Path) -> None:
    root = make_project(tmp_path, BY_FILE, {"exports.yaml": EXPORTS})
    keys = {a["asset_key"] for a in listed(root, ENV)["assets"]}
    assert {"s3/customer_export", "s3/daily_sales"} <= keys


def test_a_bad_inline_catalogue_names_the_target_and_field(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, INLINE.replace('key_template: "finance/sales_{date}.csv"', "key_template: x")
    )
    checked = dg(root, "check", "defs", env=ENV)
    assert checked.returncode != 0
    said = checked.stdout + checked.stderr
    assert "sales_export" in said and "key_template" in said
