"""The final key's lease lock against a real S3 server (moto on loopback), and the race it exists for.

Two runs of one partition renaming at the same moment must end with ONE run's complete output: the
`_one_complete_output` check reads S3 after every race. Leases are driven through the lock's clock and
`beat()` (no heartbeat thread) rather than shrunk to fractions of a second, so a slow machine cannot
turn a lease test red; one test watches the real thread renew, with a generous wait.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config
from unload_assets_local.s3_fault_proxy import FaultProxy
from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION

from unload_assets.rename.lock import final_key_lock, lock_key_for
from unload_assets.rename.step import RenameBusy, RenameResult
from unload_assets.s3_naming import part_key
from unload_assets_tests.support.rename_helpers import body, keys_under, run, stage

FAST = {"poll": (0.02, 0.1)}


@pytest.fixture()
def key() -> str:
    return f"_staging/_locks/exports/{uuid.uuid4().hex}/sales.csv.lock"


def _lock(s3: Any, bucket: str, key: str, owner: str, **kw: Any) -> Any:
    return final_key_lock(s3, bucket=bucket, lock_key=key, final_key="exports/x/sales.csv", owner=owner, **kw)


def _holder(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    found = keys_under(s3, bucket, key)
    return json.loads(body(s3, bucket, key)) if found else None


def _put_lease(s3: Any, bucket: str, key: str, owner: str, expires_in: float) -> None:
    """A lock as another worker (alive, or dead and never renewing) would have left it."""
    now = time.time()
    doc = {"owner": owner, "acquired": _iso(now), "expires": _iso(now + expires_in)}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_acquire_writes_a_lease_and_release_deletes_it(s3, bucket, key):
    with _lock(s3, bucket, key, "run-a/", lease_seconds=60) as lock:
        doc = _holder(s3, bucket, key)
        assert doc is not None and doc["owner"] == "run-a/"
        lease = datetime.fromisoformat(doc["expires"]) - datetime.fromisoformat(doc["acquired"])
        assert lease.total_seconds() == pytest.approx(60, abs=0.01)
        assert datetime.fromisoformat(doc["expires"]).tzinfo is not None  # UTC, explicitly
        lock.check()
    assert _holder(s3, bucket, key) is None


def test_a_second_owner_waits_and_gets_the_lock_after_release(s3, bucket, key):
    events: list[str] = []
    held = threading.Event()

    def second() -> None:
        held.wait()
        with _lock(s3, bucket, key, "run-b/", max_wait=5, log=events.append, **FAST):
            events.append("b holds")

    thread = threading.Thread(target=second)
    thread.start()
    with _lock(s3, bucket, key, "run-a/"):
        held.set()
        _until(lambda: any("waiting" in e for e in events))
        time.sleep(0.2)
        assert "b holds" not in events
        events.append("a releases")
    thread.join(5)
    assert events[-2:] == ["a releases", "b holds"]
    assert "held by run-a/" in events[0]
    assert _holder(s3, bucket, key) is None


def test_the_same_owner_reclaims_its_lock_at_once_after_a_crash(s3, bucket, key):
    _put_lease(s3, bucket, key, "run-a/", expires_in=600)  # a crashed attempt of run-a, lease still live
    logged: list[str] = []
    with _lock(s3, bucket, key, "run-a/", max_wait=0, log=logged.append):
        assert _holder(s3, bucket, key)["owner"] == "run-a/"  # type: ignore[index]
    assert any("reclaimed" in m for m in logged)
    assert _holder(s3, bucket, key) is None


def test_an_expired_lease_is_taken_over(s3, bucket, key):
    _put_lease(s3, bucket, key, "dead-run/", expires_in=-1)  # its worker died; nobody renews it
    logged: list[str] = []
    with _lock(s3, bucket, key, "run-b/", max_wait=0, log=logged.append):
        assert _holder(s3, bucket, key)["owner"] == "run-b/"  # type: ignore[index]
    assert any("took it over from dead-run/" in m for m in logged)


class Clock:
    """Time for the lock under test: it moves only when a test (or the lock's own `sleep`) says so."""

    def __init__(self) -> None:
        self.now = time.time()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_holder_that_stops_renewing_loses_the_lock_once_its_lease_runs_out(s3, bucket, key):
    clock = Clock()
    # The worker froze right after taking the lock: no heartbeat, no release.
    with _lock(s3, bucket, key, "run-a/", lease_seconds=120, clock=clock, heartbeat=False) as dead:
        with _lock(s3, bucket, key, "run-b/", max_wait=600, clock=clock, sleep=clock.sleep, heartbeat=False):
            assert _holder(s3, bucket, key)["owner"] == "run-b/"  # type: ignore[index]
            waited = sum(clock.slept)
            assert 120 <= waited <= 120 + 5  # until run-a's lease ran out, then within one poll (<= 5 s)
        with pytest.raises(RenameBusy, match="lost the lock"):
            dead.check()  # it would not delete anything any more
        dead.lost = True  # as its next heartbeat would find: release leaves run-b's lock alone


def test_check_asks_s3_so_a_takeover_our_clock_cannot_see_fails_it(s3, bucket, key):
    clock = Clock()
    with _lock(s3, bucket, key, "run-a/", lease_seconds=120, clock=clock, heartbeat=False) as a:
        a.check("delete staging")
        ahead = Clock()
        ahead.now = clock.now + 121  # run-b's worker clock runs two minutes ahead: a's lease looks expired
        with _lock(s3, bucket, key, "run-b/", max_wait=0, clock=ahead, heartbeat=False):
            assert clock() < a.valid_until  # by a's own clock, its lease has two minutes left
            with pytest.raises(RenameBusy, match="lost the lock .* stopping before delete staging"):
                a.check("delete staging")
            assert a.lost and _holder(s3, bucket, key)["owner"] == "run-b/"  # type: ignore[index]
    assert _holder(s3, bucket, key) is None  # run-b released its lock; run-a's release left it alone


def _lock_heads(s3: Any, key: str) -> list[dict[str, Any]]:
    """Record the HeadObject requests `s3` sends for the lock object `key` (how a check asks S3)."""
    heads: list[dict[str, Any]] = []

    def seen(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "HeadObject" and params.get("Key") == key:
            heads.append(dict(params))

    s3.meta.events.register("before-parameter-build.s3.HeadObject", seen)
    return heads


def test_a_confirmation_by_s3_covers_the_checks_of_the_next_reuse_seconds(s3_server, bucket, key):
    s3, clock, monotonic = s3_server.client(), Clock(), Clock()
    heads = _lock_heads(s3, key)
    with _lock(s3, bucket, key, "run-a/", clock=clock, monotonic=monotonic, heartbeat=False) as lock:
        lock.check("delete staging", reuse=5)  # the acquire's conditional write confirmed it
        monotonic.now += 4.9
        lock.check("delete staging", reuse=5)
        assert heads == []
        monotonic.now += 0.2  # 5.1 s after the acquire: S3 is asked again ...
        lock.check("delete staging", reuse=5)
        assert [h["IfMatch"] for h in heads] == [lock.etag]
        monotonic.now += 4.9  # ... and that answer covers the next 5 s
        lock.check("delete staging", reuse=5)
        assert len(heads) == 1
        monotonic.now += 0.2
        assert lock.beat()  # a renewal is a conditional write of ours: it confirms the lock too
        lock.check("delete staging", reuse=5)
        assert len(heads) == 1
        lock.check("delete staging")  # reuse 0: S3 is asked every time
        lock.check("delete staging")
        assert len(heads) == 3


def test_a_takeover_our_clock_cannot_see_fails_the_first_check_past_the_reuse(s3_server, bucket, key):
    s3, clock, monotonic = s3_server.client(), Clock(), Clock()
    with _lock(s3, bucket, key, "run-a/", lease_seconds=120, clock=clock, monotonic=monotonic,
               heartbeat=False) as a:  # fmt: skip
        ahead = Clock()
        ahead.now = clock.now + 121  # run-b's worker clock runs two minutes ahead: a's lease looks expired
        with _lock(s3, bucket, key, "run-b/", max_wait=0, clock=ahead, heartbeat=False):
            a.check("delete staging", reuse=5)  # the window fence.py names: within 5 s of S3's answer
            monotonic.now += 5
            with pytest.raises(RenameBusy, match="lost the lock .* stopping before delete staging"):
                a.check("delete staging", reuse=5)
            assert a.lost
            monotonic.now -= 5  # even with a fresh confirmation, a lock known lost stays lost
            with pytest.raises(RenameBusy):
                a.check("delete staging", reuse=5)
    assert _holder(s3, bucket, key) is None


def test_a_lease_run_out_by_our_clock_fails_a_check_without_asking_s3(s3_server, bucket, key):
    s3, clock, monotonic = s3_server.client(), Clock(), Clock()
    heads = _lock_heads(s3, key)
    with _lock(s3, bucket, key, "run-a/", lease_seconds=60, clock=clock, monotonic=monotonic,
               heartbeat=False) as lock:  # fmt: skip
        clock.now += 60  # a frozen holder: no renewal, and its S3 confirmation still looks fresh
        with pytest.raises(RenameBusy, match="lost the lock"):
            lock.check("write part", reuse=3600)
        assert heads == []
        lock.lost = True  # as its next heartbeat would find; release leaves the lock to expire


def test_checks_made_at_once_share_one_head_object(s3_server, bucket, key):
    s3, clock, monotonic = s3_server.client(), Clock(), Clock()
    heads = _lock_heads(s3, key)
    with _lock(s3, bucket, key, "run-a/", clock=clock, monotonic=monotonic, heartbeat=False) as lock:
        monotonic.now += 6  # the acquire's confirmation is stale: the first check must ask S3
        start, failed = threading.Barrier(8), []

        def check() -> None:
            start.wait()
            try:
                lock.check("write part", reuse=5)
            except BaseException as exc:  # reported below
                failed.append(exc)

        threads = [threading.Thread(target=check) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert failed == [] and not lock.lost and len(heads) == 1


def test_the_heartbeat_keeps_a_live_lease_past_its_first_expiry(s3, bucket, key):
    clock = Clock()
    with _lock(s3, bucket, key, "run-a/", lease_seconds=60, clock=clock, heartbeat=False) as lock:
        first = lock.etag
        clock.now += 50
        assert lock.beat() and lock.etag != first
        clock.now += 50  # 100 s after the lock was taken: past the first lease, inside the renewed one
        with pytest.raises(RenameBusy), _lock(s3, bucket, key, "run-b/", max_wait=0, clock=clock):
            pass
        assert not lock.lost and _holder(s3, bucket, key)["owner"] == "run-a/"  # type: ignore[index]
        lock.check()
        clock.now += 11  # 111 s: the renewed lease (until 110 s) has run out too, with no beat since
        with pytest.raises(RenameBusy, match="lost the lock"):
            lock.check()
    assert _holder(s3, bucket, key) is None


def test_the_heartbeat_thread_renews_the_lease_on_its_own(s3, bucket, key):
    # The real thread, in real time: a renewal every third of a 1.5 s lease, seen within a generous wait.
    with _lock(s3, bucket, key, "run-a/", lease_seconds=1.5) as lock:
        first = _holder(s3, bucket, key)["expires"]  # type: ignore[index]
        _until(lambda: _holder(s3, bucket, key)["expires"] != first, timeout=30)  # type: ignore[index]
        assert not lock.lost
    assert _holder(s3, bucket, key) is None


def test_waiting_too_long_raises_rename_busy_with_backoff(s3, bucket, key):
    _put_lease(s3, bucket, key, "run-a/", expires_in=3600)
    clock = [time.time()]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # a fake clock: 30 s of waiting in no time
        pauses.append(seconds)
        clock[0] += seconds

    final = "exports/x/sales.csv"
    with (
        pytest.raises(RenameBusy) as raised,
        _lock(s3, bucket, key, "run-b/", max_wait=30, clock=lambda: clock[0], sleep=sleep),
    ):
        pass
    message = str(raised.value)
    assert final in message and "run-a/" in message and "lease until" in message and "retried" in message
    assert pauses[0] <= 0.2 and sorted(pauses[:5]) == pauses[:5]  # from 0.2 s up, doubling (jittered)
    assert 2.5 <= max(pauses) <= 5  # capped at 5 s
    assert sum(pauses) == pytest.approx(30, abs=0.01)
    assert _holder(s3, bucket, key)["owner"] == "run-a/"  # type: ignore[index]


def test_release_leaves_alone_a_lock_another_run_took_over(s3, bucket, key):
    with _lock(s3, bucket, key, "run-a/", lease_seconds=60):
        _put_lease(s3, bucket, key, "run-b/", expires_in=60)  # as if run-a's lease had run out
    assert _holder(s3, bucket, key)["owner"] == "run-b/"  # type: ignore[index]


def test_a_renewal_that_finds_the_lock_taken_over_marks_it_lost(s3, bucket, key):
    logged: list[str] = []
    with _lock(s3, bucket, key, "run-a/", log=logged.append, heartbeat=False) as lock:
        _put_lease(s3, bucket, key, "run-b/", expires_in=60)
        assert lock.beat() is False and lock.lost
        with pytest.raises(RenameBusy, match="lost the lock"):
            lock.check()
    assert any("taken over" in m for m in logged)
    assert _holder(s3, bucket, key)["owner"] == "run-b/"  # type: ignore[index]


@pytest.fixture()
def faulty(s3_server) -> Iterator[tuple[FaultProxy, Any]]:
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.endpoint_url, aws_access_key_id=LOCAL_KEY_ID,
                              aws_secret_access_key=LOCAL_SECRET, region_name=REGION,
                              config=Config(retries={"max_attempts": 3, "mode": "standard"}))  # fmt: skip
        yield proxy, client


def test_lost_answers_and_errors_on_lock_calls_are_survived(faulty, s3, bucket, key):
    proxy, client = faulty
    lock_calls = {"path_contains": key}
    # S3 writes the lock, the answer is lost; boto's retry then meets our own lock: reclaimed.
    first = proxy.inject(
        "reset_after", predicate=lambda r: "if-none-match" in r.headers, times=1, **lock_calls
    )
    errors = proxy.inject("error", operation="GetObject", times=1, **lock_calls)
    logged: list[str] = []
    with _lock(client, bucket, key, "run-a/", log=logged.append, heartbeat=False) as lock:
        assert first.fired == 1 and errors.fired == 1 and any("reclaimed" in m for m in logged)
        # A renewal whose answer is lost: the retry's If-Match fails, the body read back is ours.
        renewal = proxy.inject(
            "reset_after", predicate=lambda r: "if-match" in r.headers, times=1, **lock_calls
        )
        assert lock.beat() and renewal.fired == 1 and not lock.lost
        adopted = lock.etag
        assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == adopted
        assert lock.beat() and lock.etag != adopted  # the next renewal works from the adopted ETag
        assert not lock.lost and s3.head_object(Bucket=bucket, Key=key)["ETag"] == lock.etag
        lock.check()
        release = proxy.inject("reset_after", operation="DeleteObject", times=1, **lock_calls)
    assert release.fired == 1 and _holder(s3, bucket, key) is None  # the retry's 404: already gone


def test_check_adopts_a_renewal_whose_every_answer_was_lost(faulty, s3, bucket, key):
    proxy, client = faulty
    with _lock(client, bucket, key, "run-a/", heartbeat=False) as lock:
        before = lock.etag
        # S3 applies the first attempt; it and boto's retries (412 now) all lose their answers.
        lost = proxy.inject("reset_after", operation="PutObject", path_contains=key)
        assert lock.beat() and lost.fired >= 2  # "renewing failed, will try again"
        proxy.clear()
        assert lock.etag == before != s3.head_object(Bucket=bucket, Key=key)["ETag"]
        lock.check()  # the lock holds our last body: ours, under its new ETag
        assert not lock.lost and lock.etag == s3.head_object(Bucket=bucket, Key=key)["ETag"]
    assert _holder(s3, bucket, key) is None


# --- the race: two runs of one partition renaming at once ----------------------------------------------


def _expected(final: str, pieces: list[bytes], mode: str) -> dict[str, bytes]:
    """The data objects a run's output consists of (its .manifest is checked separately)."""
    if mode == "parts":
        return {part_key(final, i): piece for i, piece in enumerate(pieces, start=1)}
    return {final: b"".join(pieces)}


def _one_complete_output(s3: Any, bucket: str, final: str, candidates: dict[str, dict[str, bytes]]) -> str:
    """Which run's output is in S3; fails unless it is exactly one run's, complete, and self-consistent."""
    folder = final.rsplit("/", 1)[0] + "/"
    found = {k: body(s3, bucket, k) for k in keys_under(s3, bucket, folder)}
    manifest = found.pop(final + ".manifest", None)
    if manifest is not None:
        listed = {
            e["url"].split("/", 3)[3]: e["meta"]["content_length"] for e in json.loads(manifest)["entries"]
        }
        assert set(listed) == set(found), f"the manifest lists {sorted(listed)}, S3 has {sorted(found)}"
        assert all(len(found[k]) == n for k, n in listed.items()), "a part's size differs from the manifest"
    winners = [name for name, objects in candidates.items() if objects == found]
    assert len(winners) == 1, f"final objects {sorted(found)} are not one run's complete output"
    assert (manifest is not None) == any(".part-" in k for k in found), "parts without a manifest or v.v."
    return winners[0]


RACES = {
    "3 parts vs 5 parts": ((3, "parts"), (5, "parts")),
    "single vs 5 parts": ((1, "combine"), (5, "parts")),
    "combine vs 4 parts": ((2, "combine"), (4, "parts")),
}


def _race(s3_server: Any, final: str, runs: dict[str, tuple[Any, str]]) -> dict[str, list[str]]:
    """Both runs' `rename_unload` released at the same instant; their logs; fails unless both succeed."""
    barrier = threading.Barrier(len(runs))
    results: dict[str, RenameResult | BaseException] = {}
    logs: dict[str, list[str]] = {name: [] for name in runs}

    def rename(name: str) -> None:
        staged, on_split = runs[name]
        client = s3_server.client()
        barrier.wait()
        try:
            results[name] = run(
                client, s3_server.bucket, staged, final, on_split=on_split, log=logs[name].append
            )
        except BaseException as exc:  # reported below
            results[name] = exc

    threads = [threading.Thread(target=rename, args=(name,)) for name in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(isinstance(r, RenameResult) for r in results.values()), results
    return logs


@pytest.mark.parametrize("race", list(RACES))
def test_two_runs_renaming_one_final_key_at_once_leave_one_complete_output(s3_server, race):
    bucket, clean, rounds = s3_server.bucket, s3_server.client(), 12
    winners: dict[str, int] = {}
    waits = 0
    for i in range(rounds):
        final = f"exports/{uuid.uuid4().hex}/sales.csv"
        pieces = {
            name: [f"{name}{i}-{n},{'x' * n}\n".encode() for n in range(count)]
            for name, (count, _) in zip("AB", RACES[race], strict=True)
        }
        modes = {name: on_split for name, (_, on_split) in zip("AB", RACES[race], strict=True)}
        staged = {name: stage(clean, bucket, pieces[name]) for name in pieces}
        try:
            logs = _race(s3_server, final, {name: (staged[name], modes[name]) for name in staged})
            candidates = {name: _expected(final, pieces[name], modes[name]) for name in pieces}
            winner = _one_complete_output(clean, bucket, final, candidates)
        except AssertionError as exc:
            raise AssertionError(f"{race}, round {i}: {exc}") from exc
        winners[winner] = winners.get(winner, 0) + 1
        waits += sum(any("waiting" in m for m in log) for log in logs.values())
        assert keys_under(clean, bucket, lock_key_for("_staging", final)) == []
        assert all(keys_under(clean, bucket, s.prefix) == [] for s in staged.values())
    assert waits >= rounds // 2, f"the runs rarely overlapped ({waits} waits in {rounds} rounds)"
    print(f"{race}: output left by {winners}; {waits} of {rounds} rounds had a run wait for the lock")
