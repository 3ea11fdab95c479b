"""Redshift misbehaving under UNLOAD: a dropped connection, a statement timeout.

The stack's emulator is told to drop the connection, or to stall until the session's statement_timeout
(`REDSHIFT_STATEMENT_TIMEOUT_SECONDS`) cancels it, right after it has written the data files and before
the manifest: the worst moment, with partial output in staging. The target's UNLOAD must be retried
with backoff (inside the unload step, for that target only) into a fresh staging folder, nothing
partial may reach the final keys (judged by `fault_harness` while the fault fires and after the run),
and the previous output stays until the new one is complete.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from unload_assets_tests.support.fault_harness import (
    CATALOGUE,
    Harness,
    create_tables,
    failed_targets,
    step_retries,
    target_retries,
)

pytestmark = pytest.mark.stack

ROWS = 30_000  # ~8 MB of CSV in 6 MB files: two staged files per UNLOAD
TIMEOUT_SECONDS = 1


@pytest.fixture(scope="module")
def harness(local_stack, stack_env, tmp_path_factory) -> Iterator[Harness]:
    dsn = local_stack.postgres.dsn()
    create_tables(dsn, ROWS)
    workdir = tmp_path_factory.mktemp("redshift-faults")
    (workdir / "catalogue.yaml").write_text(CATALOGUE)
    faults = local_stack.emulator.faults
    with (
        pytest.MonkeyPatch.context() as env,
        dg.instance_for_test(temp_dir=str(workdir)) as instance,
    ):
        env.setenv("FAULT_CATALOGUE", str(workdir / "catalogue.yaml"))
        env.setenv("REDSHIFT_STATEMENT_TIMEOUT_SECONDS", str(TIMEOUT_SECONDS))
        harness = Harness(faults, instance, dsn, local_stack.s3.client(), ROWS)
        harness.prime()  # the previous complete output that the faults must not damage
        yield harness
        faults.clear()
        harness.remove_outputs()
        print(
            f"\nRedshift faults injected: {faults.total_injected}; runs: {harness.runs}; "
            f"final-output views verified complete: {harness.verified}"
        )


def _partial_staging_seen(harness: Harness, target: str, new: str) -> tuple[list[list[str]], object]:
    """An `on_fire` hook: the final output is judged, and what UNLOAD has staged so far is recorded."""
    seen: list[list[str]] = []
    judge = harness.watch(target, new)

    def hook(fault) -> None:
        judge(fault)
        seen.append(harness.staging_left(target))

    return seen, hook


@pytest.mark.parametrize("target", ["fparts", "fcombine"])
def test_a_dropped_connection_then_a_timeout_are_retried_with_backoff(harness, target):
    new = harness.generation(target, "redshift-faults", rows=ROWS - 5_000)
    seen, hook = _partial_staging_seen(harness, target, new)
    where = f"_staging/{target}/"
    drop = harness.faults.inject("drop", to_contains=where, on_fire=hook)
    stall = harness.faults.inject("stall", seconds=60, to_contains=where, on_fire=hook)
    result = harness.settle(target, harness.run(target), new)

    assert drop.fired == 1 and stall.fired == 1
    # Each fault hit after the data files were written and before the manifest: partial staging.
    assert [len(keys) for keys in seen] == [2, 2]
    assert all(not key.endswith("manifest") for keys in seen for key in keys)
    assert all(f"/{result.run_id}/attempt-{n}/" in seen[n][0] for n in (0, 1))
    retries = target_retries(harness.instance, result.run_id)
    assert [(r.what, r.attempt) for r in retries] == [
        (f"UNLOAD of '{target}'", 1),
        (f"UNLOAD of '{target}'", 2),
    ]
    assert step_retries(result) == []  # the step itself was never retried: only the target
    (first_wait, first_error), (second_wait, second_error) = ((r.wait, r.error) for r in retries)
    # libpq's words for a connection dropped without an answer: over TLS (the stack's `verify-full`), the
    # TLS layer sees the end of the stream first.
    assert any(words in first_error for words in ("server closed the connection", "SSL SYSCALL error: EOF"))
    assert "57014" in second_error and "canceled on user's request" in second_error
    # UNLOAD_BACKOFF (delay 2, exponential, +- jitter): 2 +- 2 s, then 6 +- 2 s.
    assert 0 <= first_wait <= 4 <= second_wait <= 8
    # The successful attempt started by removing both failed attempts' partial files (settle() has
    # already checked that staging is empty and the new output complete).
    logs = [entry.user_message for entry in harness.instance.all_logs(result.run_id)]
    assert any("left by an earlier attempt of this run" in message for message in logs)


def test_the_retry_limit_third_wait_included_then_the_run_fails_and_loses_nothing(harness):
    # A connection that drops on every attempt: four attempts (three retries), then the run fails with
    # the previous output untouched; re-executed once Redshift is back, it completes.
    target = "fcombine"
    old, new = harness.current[target], harness.generation(target, "retry-limit")
    drop = harness.faults.inject("drop", to_contains=f"_staging/{target}/", times=10)
    result = harness.run(target)
    assert not result.success
    retries = target_retries(harness.instance, result.run_id)
    assert [r.attempt for r in retries] == [1, 2, 3] and step_retries(result) == []
    # Its only target failed: the unload step fails itself (nothing to rename), naming the target and
    # why: the fourth attempt's error.
    [failed_step] = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failed_step is not None and ".unload_unloads_" in failed_step, failed_step
    [(name, failed)] = failed_targets(result).items()
    assert name == target and failed["stage"] == "unload"
    # Seen once under load: the fault fired three times, the fourth attempt stopping before its UNLOAD;
    # its error is a transient one all the same, and the limit is what this test is about.
    text = failed["error"]
    assert "UNLOAD did not finish" in text or "Could not connect to Redshift" in text, text
    assert drop.fired in (3, 4)
    waits = [r.wait for r in retries]
    # UNLOAD_BACKOFF (4 attempts, delay 2, exponential, +- jitter): (2^n - 1) * 2 s, each +- 2 s.
    assert 0 <= waits[0] <= 4 <= waits[1] <= 8 and 12 <= waits[2] <= 16
    assert harness.look(target, {old}).complete == {"object": old}
    harness.settle(target, result, new)
