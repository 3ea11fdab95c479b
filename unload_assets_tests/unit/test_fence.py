"""The fence's rules that need no S3 (the fence against a real server: pipeline/test_rename_fence.py)."""

from __future__ import annotations

import time

import pytest

from unload_assets.rename.fence import REUSE, STEPS, Fence, condition
from unload_assets.rename.lock import FinalKeyLock, RenameBusy


def _fence(paused: list[str], reuse: float | None = None) -> Fence:
    lock = FinalKeyLock(
        None, bucket="b", lock_key="_locks/x.csv.lock", final_key="x.csv", owner="run-a/", log=lambda m: None,
        lease_seconds=60, clock=time.time,
    )  # fmt: skip
    return Fence(lock, paused.append, reuse)


def test_a_step_the_fence_does_not_know_is_refused_before_anything_runs():
    paused: list[str] = []
    with pytest.raises(ValueError, match="not a fenced step"):
        _fence(paused).guard("delete everything")
    assert paused == []


def test_a_lease_that_ran_out_stops_the_step_before_any_request():
    paused: list[str] = []
    fence = _fence(paused)  # never acquired: no lease (and no S3 client to ask)
    with pytest.raises(
        RenameBusy, match=r"lost the lock s3://b/_locks/x.csv.lock on s3://b/x.csv .* write part"
    ):
        fence.guard("write part")
    assert paused == ["write part"]


def test_a_write_is_conditional_on_the_object_seen():
    assert condition('"3858f62230ac3c915f300c664312c63f"') == {
        "IfMatch": '"3858f62230ac3c915f300c664312c63f"'
    }
    assert condition(None) == {"IfNoneMatch": "*"}
    assert len(set(STEPS)) == len(STEPS)


def test_one_confirmation_by_s3_covers_the_guards_of_a_24th_of_the_lease():
    assert _fence([]).reuse == 60 * REUSE == 2.5 and _fence([], reuse=0).reuse == 0
    paused: list[str] = []
    fence = _fence(paused)
    lock = fence.lock
    lock.valid_until, lock.confirmed_at = time.time() + 60, time.monotonic()  # as after the acquire
    for step in ("delete staging", "delete staging"):
        fence.guard(step)  # no S3 client to ask: passing means nothing was sent
    assert paused == ["delete staging", "delete staging"]
    lock.confirmed_at = time.monotonic() - 2.5  # older than the reuse: the guard asks S3 (HeadObject)
    with pytest.raises(AttributeError, match="head_object"):
        fence.guard("delete staging")


def test_a_fresh_confirmation_does_not_save_a_lock_lost_or_run_out():
    fence = _fence([])
    lock = fence.lock
    lock.valid_until, lock.confirmed_at = time.time() - 1, time.monotonic()  # our clock: the lease ran out
    with pytest.raises(RenameBusy, match="stopping before write part"):
        fence.guard("write part")
    lock.valid_until, lock.lost = time.time() + 60, True  # a renewal found the lock taken over
    with pytest.raises(RenameBusy, match="stopping before write part"):
        fence.guard("write part")
