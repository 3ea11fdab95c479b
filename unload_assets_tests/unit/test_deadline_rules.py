"""Delivery deadlines without a server: the catalogue field, which target-day is due when across time
zones and DST changes, the freshness policy the UI shows, the sensor's cursor and the messages."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml

from unload_assets.catalogue import CatalogueError, load_catalogue
from unload_assets.deadline import RUN_AT, Watched, due_between, freshness_window, target_day
from unload_assets.notify import messages
from unload_assets.notify.tick import LateNotice, SensorCursor
from unload_assets.orchestration.schedules import run_at_cron
from unload_assets_tests.support.this_project import DEADLINE_SENSOR, ENV

DAILY = {
    "name": "sales",
    "description": "Daily sales.",
    "sql": "select * from public.sales where sale_date = {{ partition_date }}",
    "key_template": "exports/sales/{date}.csv",
    "partitioning": {"type": "daily", "start_date": "2026-01-01"},
}
SNAPSHOT = {"name": "customers", "description": "All.", "sql": "select 1", "key_template": "customers.csv"}
LA, BERLIN, TOKYO = "America/Los_Angeles", "Europe/Berlin", "Asia/Tokyo"
SALES = Watched("sales", time(9, 30), daily=True, first_partition=date(2026, 1, 1))
CUSTOMERS = Watched("customers", time(11, 0), daily=False)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "unload_targets.yaml"
    path.write_text(text)
    return path


def _catalogue(tmp_path: Path, targets: list[dict], defaults: dict | None = None) -> Path:
    document = ({"defaults": defaults} if defaults else {}) | {"targets": targets}
    return _write(tmp_path, yaml.safe_dump(document, sort_keys=False))


def _at(zone: str, day: date, hour: int, minute: int = 0) -> float:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(zone)).timestamp()


# ---- the catalogue field ----------------------------------------------------------------------------


def test_deliver_by_per_target_or_in_defaults_and_null_opts_out(tmp_path: Path) -> None:
    path = _catalogue(
        tmp_path, [DAILY, {**SNAPSHOT, "deliver_by": "10:15"}], defaults={"deliver_by": "09:30"}
    )
    sales, customers = load_catalogue(path).targets
    assert (sales.deliver_by, customers.deliver_by) == ("09:30", "10:15")
    path = _catalogue(tmp_path, [DAILY, {**SNAPSHOT, "deliver_by": None}], defaults={"deliver_by": "09:30"})
    assert [t.deliver_by for t in load_catalogue(path).targets] == ["09:30", None]
    assert [t.deliver_by for t in load_catalogue(_catalogue(tmp_path, [DAILY])).targets] == [None]


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ('"9:30"', "must be a local time HH:MM (24-hour"),
        ('"24:00"', "must be a local time HH:MM"),
        ('"09:30:00"', "must be a local time HH:MM"),
        ('"08:45"', "08:45 is not after 09:00, when the morning run starts"),
        ('"09:00"', "09:00 is not after 09:00"),
        # YAML 1.1 reads an unquoted 10:30 as the number 630: say so rather than "not a string".
        ("10:30", 'write the time in quotes, "10:30": YAML reads it unquoted as 630'),
    ],
)
def test_a_bad_deliver_by_names_file_target_field_and_line(tmp_path: Path, written: str, said: str) -> None:
    path = _write(
        tmp_path,
        "targets:\n  - name: customers\n    description: All.\n    sql: select 1\n"
        f"    key_template: customers.csv\n    deliver_by: {written}\n",
    )
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    [line, _] = str(caught.value).splitlines()
    assert line.startswith("unload_targets.yaml: target 'customers', field 'deliver_by': ")
    assert said in line and line.endswith("(line 6)")


def test_a_bad_default_deliver_by_is_reported_once_in_defaults(tmp_path: Path) -> None:
    path = _catalogue(tmp_path, [DAILY, SNAPSHOT], defaults={"deliver_by": "08:00"})
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    [line, _] = str(caught.value).splitlines()
    assert line.startswith("unload_targets.yaml: defaults, field 'deliver_by': 08:00 is not after 09:00")


def test_a_deadline_comes_after_the_instances_own_run_time(tmp_path: Path) -> None:
    path = _catalogue(tmp_path, [{**DAILY, "deliver_by": "07:30"}, SNAPSHOT])
    assert load_catalogue(path, run_at=time(7, 0)).target("sales").deliver_by == "07:30"
    with pytest.raises(CatalogueError, match="07:30 is not after 09:00"):
        load_catalogue(path)


def test_the_deadline_rules_know_when_the_morning_run_starts() -> None:
    minute, hour, *_ = run_at_cron(RUN_AT).split()
    assert time(int(hour), int(minute)) == RUN_AT
    assert run_at_cron(time(7, 5)) == "5 7 * * *"


# ---- which target-day is due when ----------------------------------------------------------------


def test_at_the_deadline_a_daily_target_owes_yesterday_and_an_unpartitioned_one_today() -> None:
    sales = target_day(SALES, date(2026, 11, 23), LA)
    customers = target_day(CUSTOMERS, date(2026, 11, 23), LA)
    assert sales is not None and customers is not None
    assert (sales.key, sales.due, sales.daily) == (
        "sales/2026-11-22",
        _at(LA, date(2026, 11, 23), 9, 30),
        True,
    )
    assert (customers.key, customers.due) == ("customers/2026-11-23", _at(LA, date(2026, 11, 23), 11))
    assert customers.since == _at(LA, date(2026, 11, 23), 9)  # delivered since that morning's run
    assert (sales.due_local, customers.due_local) == (f"09:30 {LA}", f"11:00 {LA}")
    assert target_day(SALES, date(2026, 1, 1), LA) is None  # its first partition is 2026-01-01


def test_the_same_instant_is_a_different_day_in_another_zone() -> None:
    instant = datetime(
        2026, 11, 23, 2, 0, tzinfo=ZoneInfo("UTC")
    ).timestamp()  # Tokyo 11:00, LA 18:00 the day before
    [tokyo] = due_between([SALES], TOKYO, instant - 86_400, instant)
    [los_angeles] = due_between([SALES], LA, instant - 86_400, instant)
    assert (tokyo.day, los_angeles.day) == ("2026-11-22", "2026-11-21")


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        (LA, date(2026, 3, 8)),
        (LA, date(2026, 11, 1)),
        (BERLIN, date(2026, 3, 29)),
        (BERLIN, date(2026, 10, 25)),
    ],
)
def test_a_deadline_stays_at_its_local_time_across_a_dst_change(zone: str, change: date) -> None:
    after, until = _at(zone, change - timedelta(days=3), 12), _at(zone, change + timedelta(days=3), 12)
    found = due_between([SALES, CUSTOMERS], zone, after, until)
    # One deadline per target and local day, a 23- or 25-hour day included, each at its wall-clock time.
    runs = [change + timedelta(days=n) for n in range(-2, 4)]
    assert [(t.target, t.day) for t in found if t.target == "sales"] == [
        ("sales", (d - timedelta(days=1)).isoformat()) for d in runs
    ]
    assert [t.day for t in found if t.target == "customers"] == [d.isoformat() for d in runs]
    for told in found:
        local = datetime.fromtimestamp(told.due, ZoneInfo(zone))
        assert local.time() == (time(9, 30) if told.target == "sales" else time(11))
    utc_hours = {datetime.fromtimestamp(t.due, ZoneInfo("UTC")).hour for t in found if t.target == "sales"}
    assert len(utc_hours) == 2  # the UTC instant moves by the hour the clocks moved


def test_a_whole_year_has_one_deadline_per_target_and_day_in_every_zone() -> None:
    for zone in (LA, BERLIN, TOKYO, "Australia/Lord_Howe", "UTC"):  # Lord Howe moves its clocks by 30 minutes
        after, until = _at(zone, date(2026, 1, 1), 12), _at(zone, date(2027, 1, 1), 12)
        found = due_between([SALES, CUSTOMERS], zone, after, until)
        assert len(found) == 2 * 365 and len({t.key for t in found}) == len(found)
        assert [t.due for t in found] == sorted(t.due for t in found)


def test_windows_that_meet_see_each_deadline_once() -> None:
    # The sensor's ticks: (since, now] then (now, later]. A deadline on a boundary is in exactly one.
    ticks = [_at(LA, date(2026, 11, 23), 9, 0) + n * 30 * 60 for n in range(6)]
    seen = [t.key for a, b in zip(ticks, ticks[1:], strict=False) for t in due_between([SALES], LA, a, b)]
    assert seen == ["sales/2026-11-22"]


# ---- the freshness policy the UI shows -------------------------------------------------------------


def test_the_freshness_window_runs_from_the_morning_run_to_the_deadline() -> None:
    assert freshness_window(time(9, 30)) == ("30 9 * * *", timedelta(minutes=30))
    assert freshness_window(time(9, 1)) == ("1 9 * * *", timedelta(minutes=1))  # Dagster's smallest
    assert freshness_window(time(23, 59)) == ("59 23 * * *", timedelta(hours=14, minutes=59))


def test_a_target_with_a_deadline_shows_it_as_a_cron_freshness_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unload_assets.component import build_definitions

    for name, value in {**ENV, "UNLOAD_TIMEZONE": BERLIN}.items():
        monkeypatch.setenv(name, value)
    path = _catalogue(tmp_path, [{**DAILY, "deliver_by": "09:45"}, SNAPSHOT])
    defs = build_definitions(path)
    graph = defs.resolve_asset_graph()
    sales = graph.get(dg.AssetKey(["s3", "sales"])).freshness_policy
    assert isinstance(sales, dg.FreshnessPolicy)
    assert sales == dg.FreshnessPolicy.cron(
        deadline_cron="45 9 * * *", lower_bound_delta=timedelta(minutes=45), timezone=BERLIN
    )
    assert graph.get(dg.AssetKey(["s3", "customers"])).freshness_policy is None
    assert DEADLINE_SENSOR in {s.name for s in defs.sensors or []}
    assert graph.get(dg.AssetKey(["s3", "sales"])).check_keys == {
        dg.AssetCheckKey(dg.AssetKey(["s3", "sales"]), "delivered")
    }  # the check is kept


# ---- the sensor's cursor ---------------------------------------------------------------------------


def test_the_cursor_round_trips_and_an_unreadable_one_starts_afresh() -> None:
    cursor = SensorCursor(
        since=1.5, late={"sales/2026-11-22": LateNotice(2.0, "1764.000100")}, not_before=3.0
    )
    assert SensorCursor.parse(cursor.dump()) == cursor
    assert json.loads(cursor.dump())["late"] == {"sales/2026-11-22": [2.0, "1764.000100"]}
    for garbage in (None, "", "not json", "[]", '{"late": {"x": 1}}', '{"since": "soon"}'):
        assert SensorCursor.parse(garbage) == SensorCursor()


# ---- the messages ----------------------------------------------------------------------------------

LINK = "http://dagster.test:3000/runs/0123456789abcdef"


def _all(message: messages.SlackMessage) -> str:
    return message.text + json.dumps(message.blocks)


def test_a_late_message_says_which_target_and_day_and_why() -> None:
    failed = messages.Late(
        "sales",
        "2026-11-22",
        f"09:30 {LA}",
        messages.FAILED,
        "sales (unload): no <table>",
        None,
        "0123456789abcdef",
        LINK,
    )
    message = messages.late_message([failed])
    assert message.text.startswith(
        f":alarm_clock: Late: sales 2026-11-22 not delivered by 09:30 {LA} (failed)"
    )
    assert f"<{LINK}|run 01234567> failed: sales (unload): no &lt;table&gt;" in message.text
    others = [
        messages.Late("orders", "2026-11-22", f"09:30 {LA}", messages.NEVER_LAUNCHED),
        messages.Late(
            "refunds",
            "2026-11-22",
            f"09:30 {LA}",
            messages.RUNNING,
            since=1_764_000_000.0,
            run_id="r" * 16,
            link=LINK,
        ),
        messages.Late(
            "returns",
            "2026-11-22",
            f"09:30 {LA}",
            messages.QUEUED,
            since=1_764_000_000.0,
            run_id="q" * 16,
            link=LINK,
        ),
    ]
    several = _all(messages.late_message(others))
    assert ":alarm_clock: Late: 3 unload targets not delivered by their deadline (2026-11-22)" in several
    assert "never launched" in several and "still running, started <!date^1764000000^" in several
    assert "queued since <!date^1764000000^" in several and ", not started" in several


def test_a_now_delivered_message_says_when_and_how_late() -> None:
    landed = messages.Landed(
        "sales",
        "2026-11-22",
        f"09:30 {LA}",
        1_764_000_000.0,
        3_720.0,
        "s3://bk/k.csv",
        "0123456789abcdef",
        LINK,
    )
    message = messages.landed_message([landed])
    assert message.text.startswith(
        f":white_check_mark: Now delivered: sales 2026-11-22, 1h 02m after its 09:30 {LA} deadline"
    )
    assert "`s3://bk/k.csv`" in message.text and f"<{LINK}|Run 01234567>" in message.text


def test_no_secret_reaches_a_deadline_message() -> None:
    secret = "s3cr3t-Value-0123456789"
    failed = messages.Late(
        "sales", "2026-11-22", f"09:30 {LA}", messages.FAILED, f"login failed: password={secret}"
    )
    assert secret not in _all(messages.late_message([failed], secrets=[secret]))
