"""Schema-change protection without a server: the comparison, its text, the delivery record that carries
it, the Slack line, the accept tag, the refusal, and the catalogue field."""

from __future__ import annotations

import pytest
import yaml

from unload_assets.catalogue import CatalogueError, UnloadTarget, load_catalogue
from unload_assets.delivery import SCHEMA_CHANGE, SCHEMA_CHANGE_COLUMNS, Delivery, plain
from unload_assets.notify import messages
from unload_assets.orchestration.retries import Backoff, with_retries
from unload_assets.orchestration.schema_protection import ACCEPT_TAG, SchemaChangeRefused, accepted, refusal
from unload_assets.schema_change import SchemaChange, compare, manifest_columns

DAY1 = (("id", "integer"), ("amount", "numeric(10,2)"), ("region", "character varying(20)"))
DAY2 = (("id", "integer"), ("amount", "numeric(12,2)"), ("discount", "numeric(10,2)"))
EXPECTED = "added discount (numeric(10,2)); removed region; retyped amount numeric(10,2) -> numeric(12,2)"


def test_a_column_added_removed_and_retyped_is_named_with_its_types():
    change = compare(DAY1, DAY2, since="2026-11-21")
    assert change == SchemaChange(
        since="2026-11-21",
        added=(("discount", "numeric(10,2)"),),
        removed=(("region", "character varying(20)"),),
        retyped=(("amount", "numeric(10,2)", "numeric(12,2)"),),
    )
    assert change.columns() == EXPECTED
    assert change.summary() == f"schema changed since the delivery of 2026-11-21: {EXPECTED}"


def test_the_same_columns_are_no_change():
    assert compare(DAY1, DAY1, since="x") is None
    assert compare(DAY1, list(DAY1), since="x") is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # A longer varchar is a change: a fixed-width import breaks on it like on any other type.
        (
            (("id", "integer"), ("amount", "numeric(10,2)"), ("region", "character varying(60)")),
            "retyped region character varying(20) -> character varying(60)",
        ),
        ((("id", "integer"), ("region", "character varying(20)")), "removed amount"),
        ((*DAY1, ("note", "text")), "added note (text)"),
        # A header-less CSV read by position breaks when columns move, even with nothing added or removed.
        (
            (("amount", "numeric(10,2)"), ("id", "integer"), ("region", "character varying(20)")),
            "reordered amount, id, region",
        ),
        # A column added in the middle moves no other column against the rest: not a reorder.
        (
            (
                ("id", "integer"),
                ("new", "date"),
                ("amount", "numeric(10,2)"),
                ("region", "character varying(20)"),
            ),
            "added new (date)",
        ),
    ],
)
def test_each_kind_of_change_on_its_own(now, expected):
    change = compare(DAY1, now, since="2026-11-21")
    assert change is not None and change.columns() == expected


def test_a_name_selected_twice_is_told_apart_by_its_occurrence():
    before = (("a", "integer"), ("a", "integer"))
    after = (("a", "integer"), ("a", "bigint"))
    change = compare(before, after, since="d")
    assert change is not None and change.retyped == (("a#2", "integer", "bigint"),)
    assert compare(before, before[:1], since="d").removed == (("a#2", "integer"),)  # type: ignore[union-attr]


def test_a_long_list_is_cut_in_the_line_and_kept_whole_in_the_json():
    now = DAY1 + tuple((f"c{n:02d}", "integer") for n in range(25))
    change = compare(DAY1, now, since="d")
    assert change is not None
    assert change.columns().endswith("c09 (integer) (+15 more)")
    assert len(change.to_json()["added"]) == 25
    assert SchemaChange.from_json(change.to_json()) == change


def test_json_round_trip_and_junk():
    change = SchemaChange(
        "2026-11-21", (("d", "date"),), (("r", "text"),), (("a", "int", "bigint"),), ("a", "b"), True
    )
    assert SchemaChange.from_json(change.to_json()) == change
    for junk in (None, "added x", {"added": []}, [1, 2]):
        assert SchemaChange.from_json(junk) is None
    assert SchemaChange.from_json({"since": "d", "added": "x", "retyped": [1]}) == SchemaChange("d")


def test_the_manifest_schema_as_columns():
    schema = {
        "elements": [
            {"name": "id", "type": {"base": "integer"}},
            {"name": "amount", "type": {"base": "numeric", "precision": 12, "scale": 2}},
            {"name": "region", "type": {"base": "character varying", "max_length": 20}},
            {"name": "odd", "type": "?"},
        ]
    }
    assert manifest_columns(schema) == (
        ("id", "integer"),
        ("amount", "numeric(12,2)"),
        ("region", "character varying(20)"),
        ("odd", "unknown"),
    )
    assert manifest_columns(None) is None and manifest_columns({"elements": []}) is None
    assert manifest_columns({"elements": [{"type": {}}]}) is None


def _delivery(change: SchemaChange | None) -> Delivery:
    return Delivery(
        target="sales", partition="2026-11-22", bucket="bk", primary_key="exports/sales/2026-11-22.csv",
        rows=3, bytes=10, schema_change=change,
    )  # fmt: skip


def test_the_delivery_records_the_change_and_reads_it_back():
    change = compare(DAY1, DAY2, since="2026-11-21")
    metadata = _delivery(change).to_metadata()
    assert metadata[SCHEMA_CHANGE] == change.summary()  # type: ignore[union-attr]
    # As the instance gives it back (metadata values) and as plain values.
    assert Delivery.from_metadata(metadata).schema_change == change
    assert Delivery.from_metadata(plain(metadata)).schema_change == change
    # No change: no key at all, and nothing read back.
    unchanged = _delivery(None).to_metadata()
    assert SCHEMA_CHANGE not in unchanged and SCHEMA_CHANGE_COLUMNS not in unchanged
    assert Delivery.from_metadata(unchanged).schema_change is None


def test_the_slack_success_message_shows_the_change():
    run = messages.RunFacts("r" * 32, "daily_unloads", "http://dagster/runs/r", "schedule")
    change = compare(DAY1, DAY2, since="2026-11-21")
    text = messages.success_message(run, [_delivery(change)]).text
    escaped = EXPECTED.replace(">", "&gt;")  # mrkdwn: Slack shows "->"
    assert f":warning: schema changed since the delivery of 2026-11-21: {escaped}" in text
    assert "schema changed" not in messages.success_message(run, [_delivery(None)]).text
    accepted_text = messages.success_message(
        run, [_delivery(SchemaChange("d", removed=(("r", "t"),), accepted=True))]
    ).text
    assert "schema changed since the delivery of d (accepted): removed r" in accepted_text


@pytest.mark.parametrize(
    ("value", "target", "expected"),
    [
        ("true", "sales", True),
        ("True", "sales", True),
        ("sales", "sales", True),
        ("orders, sales", "sales", True),
        ("orders", "sales", False),
        ("", "sales", False),
        ("false", "sales", False),
        (None, "sales", False),
    ],
)
def test_the_accept_tag(value, target, expected):
    tags = {} if value is None else {ACCEPT_TAG: value}
    assert accepted(tags, target) is expected


def test_the_refusal_names_the_target_the_columns_and_the_way_to_accept_and_is_not_retried():
    change = compare(DAY1, DAY2, since="2026-11-21")
    text = refusal("sales", change, "s3://bk/_staging/sales/2026-11-22/run/")  # type: ignore[arg-type]
    assert text.startswith(f"Target 'sales': schema changed since the delivery of 2026-11-21: {EXPECTED}.")
    assert f"re-execute this run from failure with the run tag {ACCEPT_TAG}=sales" in text
    assert "nothing final was touched" in text and "s3://bk/_staging/sales/2026-11-22/run/" in text
    # What Slack shows of an error (300 characters) still holds the columns and the way to accept them.
    assert f"{ACCEPT_TAG}=sales" in messages.short_error(text)

    calls = []

    def refuse(number: int) -> None:
        calls.append(number)
        raise SchemaChangeRefused(text)

    with pytest.raises(SchemaChangeRefused):
        with_retries(refuse, backoff=Backoff(attempts=4, delay=0.0), what="rename", log=lambda _: None)
    assert calls == [0]  # a changed schema is not transient


SNAPSHOT = {"name": "snap", "description": "d", "sql": "select 1 as x", "key_template": "exports/snap.csv"}


def test_the_catalogue_field_defaults_to_warn_and_can_be_defaulted(tmp_path):
    assert UnloadTarget.model_validate(SNAPSHOT).on_schema_change == "warn"
    assert UnloadTarget.model_validate({**SNAPSHOT, "on_schema_change": "fail"}).on_schema_change == "fail"
    path = tmp_path / "c.yaml"
    other = {**SNAPSHOT, "name": "other", "key_template": "exports/other.csv", "on_schema_change": "warn"}
    path.write_text(yaml.safe_dump({"defaults": {"on_schema_change": "fail"}, "targets": [SNAPSHOT, other]}))
    assert [t.on_schema_change for t in load_catalogue(path).targets] == ["fail", "warn"]


def test_a_wrong_value_names_the_target_field_and_choices(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"targets": [{**SNAPSHOT, "on_schema_change": "ignore"}]}))
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    assert "target 'snap', field 'on_schema_change': Input should be 'warn' or 'fail' (got 'ignore')" in str(
        caught.value
    )
