"""Message building: content, Block Kit limits, and no secret in any text Slack receives."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unload_assets.delivery import Delivery
from unload_assets.notify import messages
from unload_assets.notify.messages import RunFacts, StepFailure, Untouched
from unload_assets.notify.run_report import job_label
from unload_assets.rename import FinalObject
from unload_assets.secrets import scrub

RUN = RunFacts(
    run_id="0123456789abcdef",
    job_name="daily_unloads",
    link="http://dagster.local:3000/runs/0123456789abcdef",
    trigger="schedule daily_unloads_at_0900",
    partition="2026-11-22",
    started=1_000.0,
    ended=1_192.0,
)
SALES = Delivery(
    target="sales",
    partition="2026-11-22",
    bucket="bk",
    primary_key="exports/sales/2026-11-22/sales.csv.gz",
    rows=12_345,
    bytes=2_621_440,
)


def _everything(message: messages.SlackMessage) -> str:
    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def test_success_message_lists_uris_counts_partition_duration_and_link() -> None:
    message = messages.success_message(RUN, [SALES])
    for part in ("sales", "2026-11-22", "12,345 rows", "2.5 MB", "3m 12s", SALES.uris[0], RUN.link):
        assert part in message.text
        assert part in json.dumps(message.blocks)
    assert message.blocks[0]["type"] == "header" and message.blocks[-1]["type"] == "context"


def test_failure_message_names_steps_error_untouched_output_and_link() -> None:
    message = messages.failure_message(
        RUN,
        [StepFailure("orders.unload_orders", "Failure: Target 'orders': relation does not exist")],
        [
            Untouched("orders", "2026-11-22", "s3://bk/orders/2026-11-21.csv", 1_790_000_000.0),
            Untouched("refunds", "2026-11-22", None, rename_failed=True),
        ],
        [SALES],
    )
    text = _everything(message)
    for part in (
        "orders.unload_orders",
        "relation does not exist",
        "s3://bk/orders/2026-11-21.csv",
        "no earlier delivery",
        "staged files kept",
        SALES.uris[0],
        RUN.link,
    ):
        assert part in text
    assert "Traceback" not in text


def test_a_delivery_read_from_metadata_puts_the_primary_uri_first_without_repeats() -> None:
    meta = {
        "s3_uri": "s3://bk/out/sales.csv.manifest",
        "final_objects": [
            {"key": "out/sales.part-001.csv", "size": 5},
            {"key": "out/sales.csv.manifest", "size": 1},
        ],
        "partition": "2026-11-22",
        "rows": 7,
        "bytes": 5,
        "target": "sales",
    }
    delivery = Delivery.from_metadata(meta, target="ignored")
    assert delivery.uris == ("s3://bk/out/sales.csv.manifest", "s3://bk/out/sales.part-001.csv")
    assert (delivery.target, delivery.partition, delivery.rows, delivery.bytes) == (
        "sales",
        "2026-11-22",
        7,
        5,
    )
    assert Delivery.from_metadata({}, target="snap").partition == "unpartitioned"


@pytest.mark.parametrize(
    ("raw", "description", "expected"),
    [
        (
            "dagster._core.definitions.events.Failure: Target 'b': split refused\n",
            None,
            "Failure: Target 'b': split refused",
        ),
        ("ValueError: boom\n  File x.py line 3\n", None, "ValueError: boom"),
        ("whatever", "Target 'x': on_split is fail", "Target 'x': on_split is fail"),
        ("", None, "unknown error"),
        ("E: " + "x" * 1000, None, "E: " + "x" * 296 + "…"),
    ],
)
def test_short_error_is_one_line_without_module_paths(
    raw: str, description: str | None, expected: str
) -> None:
    assert messages.short_error(raw, description) == expected


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        (
            "CREDENTIALS 'aws_access_key_id=AKIAABCDEFGHIJKLMNOP;aws_secret_access_key=abc/def+ghi'",
            "abc/def+ghi",
        ),
        ("token is xoxb-1234-5678-abcdefghij", "xoxb-1234-5678-abcdefghij"),
        ("password=hunter2 in dsn", "hunter2"),
        ("key AKIAABCDEFGHIJKLMNOP leaked", "AKIAABCDEFGHIJKLMNOP"),
        ("secret_access_key: s3cr3t/Value", "s3cr3t/Value"),
    ],
)
def test_scrub_removes_secret_shapes_even_when_the_value_is_unknown(text: str, leak: str) -> None:
    assert leak not in scrub(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "? bytes"), (0, "0 B"), (1023, "1,023 B"), (1536, "1.5 KB"), (5 * 1024**3, "5.0 GB")],
)
def test_format_bytes(n: int | None, text: str) -> None:
    assert messages.format_bytes(n) == text


@pytest.mark.parametrize(
    ("s", "text"), [(None, "unknown duration"), (4.4, "4s"), (192, "3m 12s"), (3 * 3600 + 60, "3h 01m")]
)
def test_format_duration(s: float | None, text: str) -> None:
    assert messages.format_duration(s) == text


_secret = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40)


@settings(max_examples=60, deadline=None)
@given(secret=_secret, prefix=st.text(max_size=30), suffix=st.text(max_size=30))
def test_a_known_secret_never_reaches_slack_wherever_it_appears(
    secret: str, prefix: str, suffix: str
) -> None:
    leaky = prefix + secret + suffix
    message = messages.failure_message(
        RunFacts("r" * 16, leaky, "http://x/runs/r", leaky, leaky),
        [StepFailure(leaky, leaky)],
        [Untouched(leaky, leaky, leaky, 0.0)],
        [Delivery(target=leaky, partition=leaky, bucket=leaky, primary_key=leaky, rows=1, bytes=1)],
        secrets=[secret],
    )
    # Slack unescapes &amp; &lt; &gt;, so check what a reader would see.
    seen = _everything(message).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert secret not in seen


@settings(max_examples=25, deadline=None)
@given(count=st.integers(min_value=0, max_value=1500), name_len=st.integers(min_value=1, max_value=63))
def test_any_number_of_targets_fits_block_kit_limits(count: int, name_len: int) -> None:
    deliveries = [
        Delivery(
            target=f"{i:04d}" + "t" * name_len,
            partition="2026-11-22",
            bucket="b",
            primary_key=f"{'k' * 200}/0",
            objects=tuple(FinalObject(f"{'k' * 200}/{j}", 1) for j in range(5)),
            rows=i,
            bytes=i,
        )
        for i in range(count)
    ]
    message = messages.success_message(RUN, deliveries)
    assert len(message.blocks) <= 50
    assert len(message.blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in message.blocks if b["type"] == "section")
    assert len(message.text) <= 4000
    assert RUN.link in message.text


def test_a_run_from_the_asset_page_is_named_as_a_person_knows_it() -> None:
    assert job_label("__ASSET_JOB") == "materialised from the asset page"
    assert job_label("__ASSET_JOB_0") == "materialised from the asset page"
    assert job_label("daily_unloads") == "daily_unloads"
