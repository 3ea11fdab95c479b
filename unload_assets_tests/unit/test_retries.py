"""Each target on its own inside a batched step: its retries, its failure, the bound on workers."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest

from unload_assets.orchestration.retries import Backoff, concurrently, describe, retries_logged, with_retries


def test_a_target_is_retried_with_growing_waits_then_its_last_error_is_raised():
    calls, waits, lines = [], [], []

    def flaky(number: int) -> str:
        calls.append(number)
        raise ConnectionError(f"dropped on attempt {number}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        with_retries(flaky, backoff=Backoff(attempts=4, delay=2.0), what="UNLOAD of 't'", log=lines.append,
                sleep=waits.append)  # fmt: skip
    assert calls == [0, 1, 2, 3]
    # delay x (2^n - 1) +- delay: 2 +- 2, 6 +- 2, 14 +- 2
    assert 0 <= waits[0] <= 4 <= waits[1] <= 8 and 12 <= waits[2] <= 16
    logged = retries_logged(lines)
    assert [(r.what, r.attempt) for r in logged] == [
        ("UNLOAD of 't'", 1),
        ("UNLOAD of 't'", 2),
        ("UNLOAD of 't'", 3),
    ]
    assert logged[0].error == "ConnectionError: dropped on attempt 0"
    assert [r.wait for r in logged] == [round(w, 1) for w in waits]


def test_a_refused_statement_is_not_retried_and_a_success_stops_the_retries():
    calls: list[int] = []

    def refused(number: int) -> None:
        calls.append(number)
        raise dg.Failure(description="Redshift refused the UNLOAD (42601)", allow_retries=False)

    with pytest.raises(dg.Failure):
        with_retries(refused, backoff=Backoff(4, 1.0), what="x", log=lambda _: None, sleep=lambda _: None)
    assert calls == [0]
    assert with_retries(lambda n: n, backoff=Backoff(4, 1.0), what="x", log=lambda _: None) == 0


def test_each_item_ends_with_its_result_or_its_own_error_and_no_more_than_the_bound_run_at_once():
    lock, running, peak = threading.Lock(), [0], [0]

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        if n % 5 == 0:
            raise ValueError(f"item {n} is bad")
        return n * 10

    outcomes = list(concurrently(range(20), work, workers=3, name=str, describe_error=describe))
    assert peak[0] == 3
    assert sorted(o.item for o in outcomes) == list(range(20))
    for outcome in outcomes:
        if outcome.item % 5 == 0:
            assert outcome.result is None and outcome.error == f"ValueError: item {outcome.item} is bad"
        else:
            assert outcome.result == outcome.item * 10 and outcome.error is None
    assert list(concurrently([], work, workers=3, name=str, describe_error=describe)) == []


def test_describe_gives_one_line_however_long_or_multiline_the_error():
    assert describe(dg.Failure(description="line one\n  line two")) == "line one line two"
    assert (
        describe(RuntimeError("x" * 5000)).endswith("…") and len(describe(RuntimeError("x" * 5000))) == 1000
    )
