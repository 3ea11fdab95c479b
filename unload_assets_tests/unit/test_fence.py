"""The fence's rules that need no S3 (the fence against a real server: pipeline/test_rename_fence.py)."""

from __future__ import annotations

import time

import pytest

from unload_assets.rename.fence import STEPS, Fence, condition
from unload_assets.rename.lock import FinalKeyLock, RenameBusy


def _fence(paused: list[str]) -> Fence:
    lock = FinalKeyLock(
        None, bucket="b", lock_key="_locks/x.csv.lock", final_key="x.csv", owner="run-a/", log=lambda m: None,
        lease_seconds=60, clock=time.time,
    )  # fmt: skip
    return Fence(lock, paused.append)


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
