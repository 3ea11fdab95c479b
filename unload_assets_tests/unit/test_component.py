"""The UnloadTargets component: this project loads through it, and a project laid out as `create-dagster`
lays one out uses it from its own defs.yaml files — with no credentials in the environment, beside the
host's own resources, twice (two teams), scaffolded by `dg`, and with a wrong attribute named with its file
and line. `dg` runs as a subprocess (marked `cli`: no server, but not the quick tier)."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

# The daemon's own tick generator: what it computes is what production runs.
from dagster._utils.schedules import cron_string_iterator

from unload_assets.assembly import build_instance
from unload_assets.catalogue import PACKAGED_CATALOGUE
from unload_assets.component import UnloadTargets, build_definitions
from unload_assets_tests.support.scratch_project import (
    DAILY_SQL,
    HOST_RESOURCES,
    listed,
    make_project,
)
from unload_assets_tests.support.scratch_project import (
    dg as run_dg,
)
from unload_assets_tests.support.this_project import ENV, described

cli = pytest.mark.cli

EXPORTS = """\
targets:
  - name: {name}
    description: Yesterday's sales.
    sql: "SQL"
    key_template: "{name}/{{date}}/sales.csv"
    partitioning: {{type: daily, start_date: "2026-01-01"}}
""".replace("SQL", DAILY_SQL.replace("{", "{{").replace("}", "}}"))


def instance(name: str, *, bucket: str, channel: str, at: str, zone: str, extra: str = "") -> str:
    return f"""\
type: unload_assets.UnloadTargets
attributes:
  name: {name}
  catalogue: exports.yaml
  redshift:
    host: "{{{{ env.{name.upper()}_REDSHIFT_HOST }}}}"
    database: dev
    user: "{{{{ env.{name.upper()}_REDSHIFT_USER }}}}"
    password: "{{{{ env.{name.upper()}_REDSHIFT_PASSWORD }}}}"
  s3: {{bucket: {bucket}, staging_prefix: _{name}_staging, iam_role: default}}
  slack: {{channel: "{channel}", token: "{{{{ env.{name.upper()}_SLACK_TOKEN }}}}"}}
  schedule: {{at: "{at}", timezone: {zone}}}
{extra}"""


FINANCE = instance(
    "finance", bucket="finance-exports", channel="#finance", at="09:00", zone="America/Los_Angeles"
)
MARKETING = instance(
    "marketing",
    bucket="marketing-exports",
    channel="#marketing",
    at="07:00",
    zone="Europe/Berlin",
    extra="  upstream_key_prefix: [redshift_marketing]\n",
)


def two_teams(tmp_path: Path) -> Path:
    return make_project(
        tmp_path,
        {"finance": FINANCE, "marketing": MARKETING},
        {
            "finance/exports.yaml": EXPORTS.format(name="finance_sales"),
            "marketing/exports.yaml": EXPORTS.format(name="campaign_sales"),
            "host.py": HOST_RESOURCES,
        },
    )


def test_this_project_loads_through_its_defs_yaml_exactly_as_the_assembly_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`definitions.py` (the defs folder and its component) and `build_definitions` give one result."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UNLOAD_TARGETS_FILE", raising=False)
    from unload_assets import definitions

    loaded = dg.load_from_defs_folder(path_within_project=Path(definitions.__file__).parent)
    assert described(loaded) == described(build_definitions(PACKAGED_CATALOGUE))


@cli
def test_dg_checks_and_lists_this_project_with_no_setting_in_the_environment() -> None:
    """CI validates with nothing set: no credentials, no host, no bucket."""
    repo = Path(__file__).resolve().parents[2]
    checked = run_dg(repo, "check", "defs", env={})
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    found = listed(repo, {})
    assert {a["asset_key"] for a in found["assets"]} >= {"s3/sales_data", "s3/customers_snapshot"}
    assert {j["name"] for j in found["jobs"]} >= {"daily_unloads", "unpartitioned_unloads"}
    assert {s["name"] for s in found["schedules"]} == {
        "daily_unloads_at_0900",
        "unpartitioned_unloads_at_0900",
    }


@cli
def test_two_instances_load_beside_the_hosts_own_resources_with_nothing_shared(tmp_path: Path) -> None:
    root = two_teams(tmp_path)
    checked = run_dg(root, "check", "defs", env={})
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    found = listed(root)
    assert {a["asset_key"] for a in found["assets"]} == {
        "host_table",
        "s3/finance_sales",
        "s3/campaign_sales",
        "redshift/public/sales",  # declared by finance
        "redshift_marketing/public/sales",  # marketing's own cluster
    }
    assert {r["name"] for r in found["resources"]} == {"s3", "redshift"} | {
        f"{team}_{what}"
        for team in ("finance", "marketing")
        for what in ("redshift", "s3", "settings", "slack", "handoff_io_manager")
    }
    assert {j["name"] for j in found["jobs"]} == {"daily_finance", "daily_marketing"}
    schedules = {s["name"]: s["cron_schedule"] for s in found["schedules"]}
    assert schedules == {"daily_finance_at_0900": "0 9 * * *", "daily_marketing_at_0700": "0 7 * * *"}
    assert {s["name"] for s in found["sensors"]} == {
        f"{team}_{what}_to_slack"
        for team in ("finance", "marketing")
        for what in ("success", "failure", "deadline")
    }
    [host] = [a for a in found["assets"] if a["asset_key"] == "host_table"]
    assert host["group_name"] == "host"


def test_each_instance_builds_its_own_resources_and_leaves_the_hosts_alone(tmp_path: Path) -> None:
    root = two_teams(tmp_path)
    folder = root / "src" / "scratch" / "defs"
    finance, marketing = (
        UnloadTargets.from_attributes_dict(attributes=_attributes(folder / team / "defs.yaml"))
        for team in ("finance", "marketing")
    )
    built = {
        team.name: build_instance(team.configuration(folder / team.name)) for team in (finance, marketing)
    }
    fin, mkt = built["finance"].resources or {}, built["marketing"].resources or {}
    assert not set(fin) & set(mkt) and not {"s3", "redshift", "slack"} & (set(fin) | set(mkt))
    assert fin["finance_settings"].bucket == "finance-exports"  # type: ignore[attr-defined]
    assert mkt["marketing_settings"].staging_prefix == "_marketing_staging"  # type: ignore[attr-defined]
    assert fin["finance_slack"].channel == "#finance"  # type: ignore[attr-defined]
    assert mkt["marketing_slack"].channel == "#marketing"  # type: ignore[attr-defined]
    # Secrets stay the variables' names: nothing secret is needed to build (or shown in the UI).
    assert fin["finance_redshift"].password is None  # FINANCE_REDSHIFT_PASSWORD unset as they load
    assert fin["finance_redshift"].host == dg.EnvVar("FINANCE_REDSHIFT_HOST")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("team", "at", "zone"),
    [("finance", time(9), "America/Los_Angeles"), ("marketing", time(7), "Europe/Berlin")],
)
def test_each_instance_ticks_at_its_own_local_time_across_dst(
    tmp_path: Path, team: str, at: time, zone: str
) -> None:
    root = two_teams(tmp_path)
    folder = root / "src" / "scratch" / "defs" / team
    component = UnloadTargets.from_attributes_dict(attributes=_attributes(folder / "defs.yaml"))
    defs = build_instance(component.configuration(folder))
    [schedule] = defs.schedules or []
    assert schedule.execution_timezone == zone
    # Through the DST change of each zone's spring: the tick stays at the local time, yesterday requested.
    ticks = cron_string_iterator(
        datetime(2026, 3, 25, tzinfo=ZoneInfo(zone)).timestamp(), schedule.cron_schedule, zone
    )
    for tick in [next(ticks) for _ in range(10)]:
        local = tick.astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (at.hour, at.minute), local
        with dg.build_schedule_context(
            scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        ) as context:
            [request] = schedule.evaluate_tick(context).run_requests or []
        assert request.partition_key == (local.date() - timedelta(days=1)).isoformat()


@cli
@pytest.mark.parametrize(
    ("change", "line", "said"),
    [
        (("    database: dev\n", "    databse: dev\n"), 7, "'databse' was unexpected"),
        (("timezone: Europe/Berlin", "timezone: Mars/Olympus"), 12, "unknown time zone 'Mars/Olympus'"),
        (("  name: marketing\n", "  name: Marketing-Team\n"), 3, "should match pattern"),
        (('at: "07:00"', 'at: "7 am"'), 12, "'7 am' is not a time HH:MM"),
        (
            ('password: "{{ env.MARKETING_REDSHIFT_PASSWORD }}"', "password: hunter2"),
            9,
            "write the secret as",
        ),
    ],
    ids=["misspelt_field", "bad_time_zone", "non_identifier_name", "bad_run_time", "literal_secret"],
)
def test_a_wrong_attribute_fails_dg_check_defs_naming_the_file_the_attribute_and_the_line(
    tmp_path: Path, change: tuple[str, str], line: int, said: str
) -> None:
    wrong = MARKETING.replace(*change)
    assert wrong != MARKETING
    root = make_project(tmp_path, {"marketing": wrong}, {"marketing/exports.yaml": EXPORTS.format(name="c")})
    checked = run_dg(root, "check", "defs", env={})
    output = checked.stdout + checked.stderr
    assert checked.returncode != 0
    assert f"src/scratch/defs/marketing/defs.yaml:{line}" in output, output[-3000:]
    assert said in output, output[-3000:]
    assert "hunter2" not in output.replace("password: hunter2", "")  # shown in the snippet of the file only


@cli
def test_dg_lists_the_component_and_scaffolds_an_instance_that_dg_check_defs_accepts(tmp_path: Path) -> None:
    root = make_project(tmp_path, {})
    components = run_dg(root, "list", "components", "--json")
    assert "unload_assets.UnloadTargets" in components.stdout, components.stderr[-2000:]
    scaffolded = run_dg(root, "scaffold", "defs", "unload_assets.UnloadTargets", "exports")
    assert scaffolded.returncode == 0, scaffolded.stdout[-2000:] + scaffolded.stderr[-2000:]
    folder = root / "src" / "scratch" / "defs" / "exports"
    assert {p.name for p in folder.iterdir()} == {"defs.yaml", "exports.yaml"}
    assert "name: exports" in (folder / "defs.yaml").read_text()
    checked = run_dg(root, "check", "defs", env={})
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    found = listed(root)
    assert {a["asset_key"] for a in found["assets"]} == {"s3/exports_daily_sales", "redshift/public/sales"}
    assert [s["name"] for s in found["schedules"]] == ["daily_exports_at_0900"]


def test_an_inline_catalogue_keeps_its_placeholders_and_the_instances_owners_and_tags(tmp_path: Path) -> None:
    defs_yaml = tmp_path / "defs.yaml"
    defs_yaml.write_text(
        "type: unload_assets.UnloadTargets\nattributes:\n  name: inline\n"
        "  redshift: {host: h, database: d}\n  s3: {bucket: b}\n"
        '  owners: ["team:finance"]\n  tags: {domain: finance}\n'
        "  targets:\n    - name: sales_export\n      description: Sales.\n"
        f'      sql: "{DAILY_SQL}"\n      key_template: "finance/sales_{{date}}.csv"\n'
        '      partitioning: {type: daily, start_date: "2026-01-01"}\n      tags: {tier: gold}\n'
    )
    component = UnloadTargets.from_attributes_dict(attributes=_attributes(defs_yaml))
    config = component.configuration(tmp_path)
    graph = build_instance(config).resolve_asset_graph()
    node = graph.get(dg.AssetKey(["s3", "sales_export"]))
    assert node.owners == ["team:finance"]
    assert {"domain": "finance", "tier": "gold"}.items() <= dict(node.tags).items()
    assert "{{ partition_date }}" in str(node.metadata["sql"].value)
    assert config.catalogue.origin == f"inline in {defs_yaml}"


def test_the_packaged_defs_yaml_maps_every_variable_the_readme_names() -> None:
    """Each environment variable of this project's defs.yaml appears in the README's configuration table,
    next to its attribute."""
    repo = Path(__file__).resolve().parents[2]
    defs_yaml = (repo / "unload_assets" / "defs" / "unload_targets" / "defs.yaml").read_text()
    readme = (repo / "README.md").read_text()
    code = "\n".join(line.split("#")[0] for line in defs_yaml.splitlines())
    variables = set(re.findall(r"env(?:\.|\(')([A-Z_0-9]+)", code))
    assert len(variables) > 25
    rows = {line for line in readme.splitlines() if line.startswith("|")}
    missing = [v for v in sorted(variables) if not any(f"`{v}`" in row for row in rows)]
    assert missing == []


def _attributes(defs_yaml: Path) -> dict:
    import yaml

    return yaml.safe_load(defs_yaml.read_text())["attributes"]
