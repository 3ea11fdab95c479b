"""A holder that loses the final key's lock changes nothing afterwards (`fence.py`), against moto on loopback.

Three runs per case: an earlier run's output (C) is in place; run A renames over it and is paused at one
destructive step; run B takes the lock over while A is paused and renames too. Three views:

- the pause: A stops at each step in `fence.STEPS` (the real process freeze: every S3 request of its
  client, heartbeat included, waits) until its real lease (2 s) has run out; B takes over and finishes;
  A resumes. A must raise RenameBusy naming the key and change nothing: B's output stays byte-identical.
  Also at a later guard of a batch (the second part, staging's manifest after its files), and with
  guards that never ask S3 after the acquire (`guard_reuse` of an hour): the guard that relies on an
  earlier confirmation stops a holder past its lease all the same.
- the coverage: in a clean run of every case, each request that deletes or overwrites an object is
  preceded by its step's guard (the pause hook, then HeadObject If-Match on the lock unless S3
  confirmed the lock within `guard_reuse`) and carries a condition (staging, this run's own, aside). A
  new destructive request without a fence fails here.
- the window: B takes over between A's guard and A's request (the lock's own bytes are put back, so
  A's guard passes, as it would had B come a moment later). S3's condition must refuse A's request.
  Run only for the requests moto 5.2.5 checks the condition of (see `fence.py`'s docstring).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from unload_assets_local.s3_fault_proxy import FaultProxy
from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION

from unload_assets.rename.fence import STEPS
from unload_assets.rename.lock import lock_key_for
from unload_assets.rename.step import RenameBusy, RenameResult
from unload_assets.s3_naming import manifest_key_for, part_key
from unload_assets_tests.support.rename_helpers import Staged, body, keys_under, run, stage

LEASE = 2.0  # A's lease: real time, short enough for a quick test, long enough for a loaded machine
DESTRUCTIVE = {"PutObject", "CopyObject", "CompleteMultipartUpload", "DeleteObject", "DeleteObjects"}


@dataclass(frozen=True)
class Layout:
    pieces: int  # staged files (0: a day without rows)
    on_split: str = "combine"
    options: dict[str, Any] = field(default_factory=dict)


PARTS2, PARTS3, PARTS4 = Layout(2, "parts"), Layout(3, "parts"), Layout(4, "parts")
SINGLE, COMBINED, EMPTY = Layout(1), Layout(2), Layout(0)
BIG = Layout(1, options={"max_copy_size": 8})  # above the copy limit: UploadPartCopy + Complete


@dataclass(frozen=True)
class Case:
    step: str  # where A is paused
    earlier: Layout  # C
    paused: Layout  # A
    other: Layout  # B
    occurrence: int = 1  # at which of A's guards of `step` (2: a later request of a batch)


CASES = {
    "withdraw manifest": Case("withdraw manifest", PARTS4, PARTS2, PARTS3),
    "delete extra parts": Case("delete extra parts", PARTS4, PARTS2, PARTS3),
    "write part": Case("write part", PARTS4, PARTS2, PARTS3),
    "write part: the second": Case("write part", PARTS4, PARTS2, PARTS3, occurrence=2),
    "write manifest": Case("write manifest", PARTS4, PARTS2, PARTS3),
    "write object: copy": Case("write object", PARTS4, SINGLE, SINGLE),
    "write object: multipart copy": Case("write object", SINGLE, BIG, SINGLE),
    "write object: combine": Case("write object", PARTS4, COMBINED, SINGLE),
    "write object: empty day": Case("write object", SINGLE, EMPTY, SINGLE),
    "delete other": Case("delete other", SINGLE, PARTS2, SINGLE),
    "delete stale parts": Case("delete stale parts", PARTS4, SINGLE, PARTS3),
    "delete staging": Case("delete staging", SINGLE, SINGLE, SINGLE),
    "delete staging: the manifest": Case("delete staging", SINGLE, SINGLE, SINGLE, occurrence=2),
}
# `guard_reuse`: the default (a 24th of the lease), or an hour (no guard asks S3 after the acquire).
REUSE = {"default": None, "an hour": 3600.0}


def test_the_cases_pause_at_every_fenced_step():
    assert sorted({case.step for case in CASES.values()}) == sorted(STEPS)


def _pieces(run_name: str, layout: Layout) -> list[bytes]:
    return [f"{run_name}{i},{'x' * (i + 9)}\n".encode() for i in range(layout.pieces)]


def _rename(s3: Any, bucket: str, layout: Layout, staged: Staged, final: str, **kw: Any) -> RenameResult:
    return run(s3, bucket, staged, final, on_split=layout.on_split, workers=1, **layout.options, **kw)


def _output(s3: Any, bucket: str, final: str) -> dict[str, bytes]:
    folder = final.rsplit("/", 1)[0] + "/"
    return {k: body(s3, bucket, k) for k in keys_under(s3, bucket, folder)}


def _state(s3: Any, bucket: str, final: str, *staged: Staged) -> dict[str, tuple[str, bytes]]:
    """What A could touch: the final folder, both runs' staging, the lock; key -> (ETag, body)."""
    folder = final.rsplit("/", 1)[0] + "/"
    keys = keys_under(s3, bucket, folder) + keys_under(s3, bucket, lock_key_for("_staging", final))
    for s in staged:
        keys += keys_under(s3, bucket, s.prefix)
    found = {}
    for key in keys:
        got = s3.get_object(Bucket=bucket, Key=key)
        found[key] = (got["ETag"], got["Body"].read())
    return found


def _assert_complete(output: dict[str, bytes], final: str, pieces: list[bytes], layout: Layout) -> None:
    """`output` is exactly the run's output of `pieces`: its objects, whole, and a manifest listing them."""
    if layout.on_split != "parts":
        assert output == {final: b"".join(pieces)}
        return
    parts = {part_key(final, i): piece for i, piece in enumerate(pieces, start=1)}
    manifest = output.pop(manifest_key_for(final))
    assert output == parts
    listed = {e["url"].split("/", 3)[3]: e["meta"]["content_length"] for e in json.loads(manifest)["entries"]}
    assert listed == {k: len(v) for k, v in parts.items()}


def _until_lease_expired(s3: Any, bucket: str, lock_key: str) -> None:
    """Wait (by the condition, not a fixed time) until the lease in the lock object has run out."""
    deadline = time.monotonic() + 60
    while True:
        doc = json.loads(body(s3, bucket, lock_key))
        left = datetime.fromisoformat(doc["expires"]).timestamp() - time.time()
        if left < 0:
            return
        assert time.monotonic() < deadline, "the paused holder's lease never ran out: is it still renewing?"
        time.sleep(left + 0.05)


class Freeze:
    """A process that stops dead: every S3 request of one client, from any thread, waits while frozen.

    Also records the client's requests (name, parameters), and the pause-hook calls among them.
    """

    def __init__(self) -> None:
        self.running = threading.Event()
        self.running.set()
        self.events: list[tuple[str, str, dict[str, Any]]] = []  # ("call", op, params) | ("pause", step, {})

    def attach(self, s3: Any) -> Any:
        s3.meta.events.register("before-parameter-build.s3", self._seen)
        s3.meta.events.register("before-send.s3", self._hold)
        return s3

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.events.append(("call", model.name, dict(params)))

    def _hold(self, **_: Any) -> None:
        self.running.wait()

    def pause_at(
        self, step: str | None, reached: threading.Event, occurrence: int = 1
    ) -> Callable[[str], None]:
        """The rename's pause hook: record every step; freeze at the `occurrence`-th `step` (None: never)."""
        count = 0

        def pause(name: str) -> None:
            nonlocal count
            self.events.append(("pause", name, {}))
            count += name == step
            if name == step and count == occurrence and not reached.is_set():
                self.running.clear()
                reached.set()
                self.running.wait()

        return pause


def _destructive(events: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(op, params) for kind, op, params in events if kind == "call" and op in DESTRUCTIVE]


def _in_thread(target: Callable[[], RenameResult]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def main() -> None:
        try:
            outcome["result"] = target()
        except BaseException as exc:  # reported by the test
            outcome["result"] = exc

    thread = threading.Thread(target=main)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("reuse", list(REUSE))
@pytest.mark.parametrize("case", list(CASES))
def test_a_holder_paused_past_its_lease_changes_nothing_after_it(s3_server, case, reuse):
    c = CASES[case]
    bucket, clean = s3_server.bucket, s3_server.client()
    final = f"exports/{uuid.uuid4().hex}/sales.csv"
    lock_key = lock_key_for("_staging", final)
    _rename(clean, bucket, c.earlier, stage(clean, bucket, _pieces("C", c.earlier)), final)
    staged_a = stage(clean, bucket, _pieces("A", c.paused))
    pieces_b = _pieces("B", c.other)
    staged_b = stage(clean, bucket, pieces_b)

    freeze, reached = Freeze(), threading.Event()
    a_client = freeze.attach(s3_server.client())
    thread, outcome = _in_thread(
        lambda: _rename(
            a_client,
            bucket,
            c.paused,
            staged_a,
            final,
            lease_seconds=LEASE,
            guard_reuse=REUSE[reuse],
            pause=freeze.pause_at(c.step, reached, c.occurrence),
        )
    )
    try:
        assert reached.wait(60), f"A never reached {c.step!r} #{c.occurrence}: {outcome.get('result')!r}"
        _until_lease_expired(clean, bucket, lock_key)
        logs: list[str] = []
        _rename(s3_server.client(), bucket, c.other, staged_b, final, log=logs.append)
        assert any("took it over" in m for m in logs), logs
        b_output = _output(clean, bucket, final)
        _assert_complete(dict(b_output), final, pieces_b, c.other)
        before = _state(clean, bucket, final, staged_a, staged_b)
        seen = len(freeze.events)
    finally:
        freeze.running.set()  # A resumes
        thread.join(60)

    raised = outcome["result"]
    assert isinstance(raised, RenameBusy), raised
    assert f"s3://{bucket}/{final}" in str(raised) and c.step in str(raised)
    assert _state(clean, bucket, final, staged_a, staged_b) == before, "A changed something after resuming"
    assert _output(clean, bucket, final) == b_output  # B's output, byte for byte
    late = [(op, params["Key"]) for op, params in _destructive(freeze.events[seen:])]
    assert all(key == lock_key for _, key in late), f"A's requests after it resumed: {late}"


def _guarded(
    events: list[tuple[str, str, dict[str, Any]]], lock_key: str, staging: str, asks: bool | None
) -> set[str]:
    """Check every destructive request in `events`; the steps it found them under.

    `asks`: whether each guard asks S3 (HeadObject If-Match on the lock) before its request (None: it may).
    """
    steps: set[str] = set()
    for i, (kind, op, params) in enumerate(events):
        if kind != "call" or op not in DESTRUCTIVE:
            continue
        key = params.get("Key", "")
        where = f"request #{i} {op} {key or params.get('Delete')}"
        if key == lock_key:  # the lock's own writes are conditional by construction
            assert "IfMatch" in params or (op == "PutObject" and "IfNoneMatch" in params), where
            continue
        j = i - 1
        if events[j][:2] == ("call", "HeadObject") and events[j][2].get("Key") == lock_key:
            assert asks is not False, f"{where}: its guard asked S3 within guard_reuse"
            assert "IfMatch" in events[j][2], f"{where}: its guard did not ask S3 for our lease"
            j -= 1
        else:
            assert asks is not True, f"{where}: its guard did not ask S3"
        pk, step, _ = events[j]
        assert j >= 0 and pk == "pause", f"{where} is not right after a guard"
        steps.add(step)
        if op == "DeleteObjects":
            objects = params["Delete"]["Objects"]
            if all(o["Key"].startswith(staging) for o in objects):
                continue  # this run's own staging
            assert all("ETag" in o for o in objects), f"{where} deletes without the ETags seen"
        else:
            assert "IfMatch" in params or "IfNoneMatch" in params, f"{where} is not conditional"
    return steps


# guard_reuse -> whether every guard asks S3 (0), none does (an hour: the acquire confirmed the lock), or
# some do (the default: a 24th of the lease).
ASKS = {0.0: True, 3600.0: False, None: None}


@pytest.mark.parametrize("reuse", list(ASKS))
def test_every_destructive_request_is_guarded_and_conditional(s3_server, reuse):
    bucket, clean = s3_server.bucket, s3_server.client()
    found: set[str] = set()
    for name, c in CASES.items():
        final = f"exports/{uuid.uuid4().hex}/sales.csv"
        _rename(clean, bucket, c.earlier, stage(clean, bucket, _pieces("C", c.earlier)), final)
        staged = stage(clean, bucket, _pieces("A", c.paused))
        watch = Freeze()
        client, pause = watch.attach(s3_server.client()), watch.pause_at(None, threading.Event())
        _rename(client, bucket, c.paused, staged, final, guard_reuse=reuse, pause=pause)
        steps = _guarded(watch.events, lock_key_for("_staging", final), staged.prefix, ASKS[reuse])
        assert c.step in steps, f"{name}: A never made a {c.step!r} request ({sorted(steps)})"
        guards = [e for e in watch.events if e[0] == "pause" and e[1] == c.step]
        assert len(guards) >= c.occurrence, f"{name}: A made {len(guards)} {c.step!r} request(s)"
        found |= steps
    assert found == set(STEPS)


# Only where moto 5.2.5 checks the request's condition (fence.py); the key S3 must refuse the write of.
WINDOW = {
    "withdraw manifest": "{final}.manifest",
    "write manifest": "{final}.manifest",
    "write object: combine": "{final}",
    "write object: empty day": "{final}",
    "delete other": "{final}",
}


@pytest.mark.parametrize("case", list(WINDOW))
def test_a_takeover_between_guard_and_request_is_refused_by_s3(s3_server, case):
    c = CASES[case]
    bucket, clean = s3_server.bucket, s3_server.client()
    final = f"exports/{uuid.uuid4().hex}/sales.csv"
    lock_key = lock_key_for("_staging", final)
    _rename(clean, bucket, c.earlier, stage(clean, bucket, _pieces("C", c.earlier)), final)
    staged_a = stage(clean, bucket, _pieces("A", c.paused))
    pieces_b = _pieces("B", c.other)
    staged_b = stage(clean, bucket, pieces_b)
    b_output: dict[str, bytes] = {}

    def pause(step: str) -> None:
        if step == c.step and not b_output:
            # B takes the lock over and renames; then A's lock object is put back byte for byte (same
            # ETag), as if B had come only after A's guard: A's guard passes, its request must not.
            ours = body(clean, bucket, lock_key)
            clean.delete_object(Bucket=bucket, Key=lock_key)
            _rename(s3_server.client(), bucket, c.other, staged_b, final)
            b_output.update(_output(clean, bucket, final))
            clean.put_object(Bucket=bucket, Key=lock_key, Body=ours)
        elif b_output:  # any later step: B holds the lock again, so A's next guard fails
            clean.put_object(Bucket=bucket, Key=lock_key, Body=b'{"owner": "run-b/"}')

    with pytest.raises(RenameBusy) as raised:
        _rename(clean, bucket, c.paused, staged_a, final, lease_seconds=600, pause=pause)
    refused = WINDOW[case].format(final=final)
    assert f"s3://{bucket}/{refused} is no longer as this run saw it" in str(raised.value)
    _assert_complete(dict(b_output), final, pieces_b, c.other)
    assert _output(clean, bucket, final) == b_output
    clean.delete_object(Bucket=bucket, Key=lock_key)


def test_lost_answers_to_conditional_requests_are_recognised_as_our_own(s3_server):
    # S3 applies the request, the answer is lost, and boto's retry meets our own write (a 412, or a 404
    # for a delete): that is this run's step done, not another run's takeover.
    bucket, clean = s3_server.bucket, s3_server.client()
    final = f"exports/{uuid.uuid4().hex}/sales.csv"
    _rename(clean, bucket, PARTS4, stage(clean, bucket, _pieces("C", PARTS4)), final)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.endpoint_url, aws_access_key_id=LOCAL_KEY_ID,
                              aws_secret_access_key=LOCAL_SECRET, region_name=REGION,
                              config=Config(retries={"max_attempts": 3, "mode": "standard"}))  # fmt: skip
        manifest = {"path_contains": final + ".manifest", "times": 1}
        rules = [
            proxy.inject("reset_after", operation="DeleteObject", **manifest),  # withdraw manifest
            proxy.inject("reset_after", operation="PutObject", **manifest),  # write manifest
            proxy.inject("reset_after", operation="CopyObject", path_contains=part_key(final, 1), times=1),
        ]
        pieces = _pieces("A", PARTS2)
        _rename(client, bucket, PARTS2, stage(clean, bucket, pieces), final)
        assert [r.fired for r in rules] == [1, 1, 1]
        _assert_complete(_output(clean, bucket, final), final, pieces, PARTS2)

        rules = [
            proxy.inject("reset_after", operation="CompleteMultipartUpload", path_contains=final, times=1),
            proxy.inject("reset_after", operation="DeleteObject", **manifest),  # delete other
        ]
        pieces = _pieces("B", COMBINED)
        _rename(client, bucket, COMBINED, stage(clean, bucket, pieces), final)
        assert [r.fired for r in rules] == [1, 1]
        _assert_complete(_output(clean, bucket, final), final, pieces, COMBINED)
