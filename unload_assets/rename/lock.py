"""One rename at a time per final key: a lease lock kept in S3 itself.

Two runs of the same partition (a manual re-run next to a scheduled one, or two Dagster deployments
sharing a bucket) rename the same final key. Each `rename_unload` is crash-safe on its own, but two at once
interleave: one run's `write_parts` withdraws the manifest or deletes parts the other just wrote. Only S3
is shared by every deployment, so the guard is an S3 object, written with S3's conditional writes:

- acquire: PutObject If-None-Match "*" succeeds for exactly one writer. A lock that is taken is read
  (body and ETag): its own owner (a retry or re-execution of the same run after a crash; the owner is the
  run's staging prefix) reclaims it at once; anyone takes it over once its lease has expired (the holder
  died), with PutObject If-Match <ETag>, which only one of several contenders wins. Otherwise wait.
- hold: a heartbeat thread renews the lease every lease/3 with If-Match <our ETag>; a renewal refused
  with 412 means another run took the lock over. (The lease document and its token: below.)
- check: our lease by our own clock, then S3 itself (HeadObject If-Match <our ETag>): a takeover that
  our clock cannot see (another worker's clock runs ahead) still fails it. `check(reuse=r)` asks S3 only
  when S3 has not confirmed the lock ours in the last r seconds (by that HeadObject, or by one of our own
  conditional lease writes: acquire, renewal); checks made at once wait for one request and share it.
  `fence.py` calls it right before every destructive step of the rename, and makes each step
  conditional on its own object too.
- release: DeleteObject If-Match <our ETag>, so a lock that is someone else's by now stays.

Expiry times are written and judged with each worker's own UTC clock: the clocks of all workers must
agree to well within the lease (NTP does that easily; the default lease is two minutes). S3 answers 412
PreconditionFailed, or 409 ConditionalRequestConflict to concurrent conditional writes: both mean
"someone else's write won", and the loop looks again.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from unload_assets.rename.s3ops import CONFLICT, NOT_FOUND

GONE = NOT_FOUND


# The lease document a lock object holds.
# The lease document a lock object holds (`lock.py`): its owner, since when, until when, and a token.
#
# The token is one holder's own (a fresh one per `FinalKeyLock`): two holders never write the same body,
# so an ETag of our lease never comes back once someone else has written the lock. That makes "the lock
# object still has the ETag we last wrote" a sound test of still holding it (`FinalKeyLock.check`).
def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def lease_body(owner: str, acquired: str, expires: float, token: str) -> bytes:
    doc = {"owner": owner, "acquired": acquired, "expires": iso(expires), "token": token}
    return json.dumps(doc).encode()


def holder_of(body: bytes) -> dict[str, Any]:
    """The lease document in `body`; empty when it is not one (then it counts as expired)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def expiry(doc: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(doc["expires"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0  # an unreadable lock must not block every run forever: treat it as expired


def lock_key_for(staging_root: str, final_key: str) -> str:
    """Where the lock of `final_key` lives: under staging, unseen by readers of the final prefix."""
    return "/".join(part for part in (staging_root, "_locks", final_key + ".lock") if part)


class RenameBusy(RuntimeError):
    """Another run is renaming the same key (or took the lock over from this one); retry later."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class FinalKeyLock:
    """One holder's view of the lock object; use it through `final_key_lock`."""

    def __init__(
        self,
        s3: Any,
        *,
        bucket: str,
        lock_key: str,
        final_key: str,
        owner: str,
        log: Callable[[str], None],
        lease_seconds: float,
        clock: Callable[[], float],
        write_args: Mapping[str, Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3, self.bucket, self.key, self.final_key, self.owner = s3, bucket, lock_key, final_key, owner
        self.log, self.lease, self.clock = log, lease_seconds, clock
        self.where = f"s3://{bucket}/{lock_key}"
        self.write_args = dict(write_args or {})  # encrypted like the output it guards
        self.etag = ""
        self.lost = False  # a renewal found the lock taken over by another run
        self.valid_until = 0.0  # our clock's end of the lease we last wrote
        # When (`monotonic`, taken before sending) the request went out by which S3 last confirmed the lock
        # ours: a conditional lease write or HeadObject If-Match that succeeded. An age, so monotonic:
        # a wall clock set back must not make an old confirmation look fresh.
        self.monotonic = monotonic
        self.confirmed_at = -math.inf
        self._acquired = ""
        self._body = b""  # the last lease body we sent
        self._token = uuid.uuid4().hex  # in every lease body: no other holder's write has our ETag
        self._mutex = threading.Lock()  # a renewal and a check never interleave (both move `etag`)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _put(self, **condition: str) -> bool:
        """Write a fresh lease under `condition`; False if the lock is another version (or gone) instead."""
        now = self.clock()
        acquired = self._acquired or iso(now)
        self._body = lease_body(self.owner, acquired, now + self.lease, self._token)
        sent = self.monotonic()
        try:
            resp = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=self._body,
                ContentType="application/json",
                **self.write_args,
                **condition,
            )
        except ClientError as exc:
            if _code(exc) in CONFLICT + GONE:
                return False
            raise
        self.etag, self.valid_until, self._acquired = resp["ETag"], now + self.lease, acquired
        self.confirmed_at = sent
        return True

    def _read(self) -> tuple[bytes, str] | None:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _code(exc) in GONE:
                return None
            raise
        return resp["Body"].read(), resp["ETag"]

    def acquire(self, *, max_wait: float, poll: tuple[float, float], sleep: Callable[[float], None]) -> None:
        deadline, delay, seen = self.clock() + max_wait, poll[0], None
        while not self._put(IfNoneMatch="*"):
            found = self._read()
            if found is None:
                continue  # released between our write and the read: try again at once
            holder = holder_of(found[0])
            owner, expires = holder.get("owner"), expiry(holder)
            if owner == self.owner or expires <= self.clock():
                # If-Match: of several runs that saw the same expired lease, one wins; the others look again.
                if self._put(IfMatch=found[1]):
                    how = f"took it over from {owner}, whose lease expired at {holder.get('expires')}"
                    if owner == self.owner:
                        how = "reclaimed it from an earlier attempt of this run"
                    self.log(f"lock {self.where}: {how}")
                    break
                continue
            if owner != seen:  # once per holder
                self.log(f"lock {self.where} is held by {owner} until {holder.get('expires')}: waiting")
                seen = owner
            if self.clock() >= deadline:
                raise RenameBusy(
                    f"s3://{self.bucket}/{self.final_key} is being renamed by another run ({owner}, lease "
                    f"until {holder.get('expires')}); gave up after waiting {max_wait:.0f}s for its lock "
                    f"{self.where}. The rename will be retried."
                )
            sleep(min(delay, max(deadline - self.clock(), 0.0)) * random.uniform(0.5, 1.0))
            delay = min(delay * 2, poll[1])

    def start_heartbeat(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease {self.key}", daemon=True)
        self._beat.start()

    def _renew(self) -> bool:
        return self._put(IfMatch=self.etag) or self._adopt()

    def _adopt(self) -> bool:
        """After a refused If-Match: whether the lock holds our last body anyway (then take its ETag).

        A lost answer makes boto's retry of our own write fail the If-Match: the body tells.
        """
        sent = self.monotonic()
        found = self._read()
        if found is not None and found[0] == self._body:
            self.etag, self.valid_until = found[1], expiry(holder_of(self._body))
            self.confirmed_at = sent
            return True
        return False

    def beat(self) -> bool:
        """Renew the lease once; False once the lock turns out to be another run's (then `lost`)."""
        try:
            with self._mutex:
                if self._renew():
                    return True
        except (ClientError, BotoCoreError, OSError) as exc:
            self.log(f"lock {self.where}: renewing the lease failed, will try again: {exc}")
            return True
        self.lost = True
        self.log(f"lock {self.where}: taken over by another run (our lease had expired)")
        return False

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 3) and self.beat():
            pass

    def check(self, step: str = "", reuse: float = 0.0) -> None:
        """Raise RenameBusy unless the lock is still ours: by our clock's lease, then by S3 itself.

        S3 is asked (HeadObject) unless it confirmed the lock ours less than `reuse` seconds ago; 0 asks
        every time. Checks made at once queue on the mutex: the first asks, the others find it fresh.
        """
        with self._mutex:
            held = not self.lost and self.clock() < self.valid_until
            if held and (self._fresh(reuse) or self._confirmed()):
                return
        raise RenameBusy(
            f"lost the lock {self.where} on s3://{self.bucket}/{self.final_key} (lease expired or taken "
            f"over by another run); stopping before {step or 'the next step'}, changing nothing more. "
            "The rename will be retried."
        )

    def _fresh(self, reuse: float) -> bool:
        """S3 confirmed the lock ours less than `reuse` seconds ago (by our monotonic clock)."""
        return self.monotonic() - self.confirmed_at < reuse

    def _confirmed(self) -> bool:
        """S3 still holds the lease we last wrote (HeadObject If-Match <our ETag>)."""
        sent = self.monotonic()
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            self.confirmed_at = sent
            return True
        except ClientError as exc:
            if _code(exc) not in CONFLICT + GONE:
                raise
        if self._adopt():
            return True
        self.lost = True
        self.log(f"lock {self.where}: S3 says another run holds it now")
        return False

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self.lost:
            return
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except (ClientError, BotoCoreError, OSError) as exc:
            if not (isinstance(exc, ClientError) and _code(exc) in CONFLICT + GONE):  # else: not ours now
                self.log(f"could not release the lock {self.where} (its lease will expire): {exc}")


@contextmanager
def final_key_lock(
    s3: Any,
    *,
    bucket: str,
    lock_key: str,
    final_key: str,
    owner: str,
    log: Callable[[str], None] = lambda m: None,
    lease_seconds: float = 120.0,
    max_wait: float = 900.0,
    poll: tuple[float, float] = (0.2, 5.0),
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    heartbeat: bool = True,
    write_args: Mapping[str, Any] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[FinalKeyLock]:
    """Hold the lock object `lock_key`, which guards `final_key`, as `owner` for the `with` block.

    RenameBusy if another owner holds it for `max_wait` seconds; `poll` is the first and the longest
    pause between looks (each jittered). A thread renews the lease every third of it. `clock`, `sleep`,
    `monotonic` (the age of S3's last confirmation, `check(reuse=...)`) and `heartbeat` (False: no
    thread, the test calls `beat()`) are there for tests, to drive time.
    `write_args`: the encryption of the lock object's writes (the final key's, `Encryption.write_args`).
    """
    lock = FinalKeyLock(
        s3,
        bucket=bucket,
        lock_key=lock_key,
        final_key=final_key,
        owner=owner,
        log=log,
        lease_seconds=lease_seconds,
        clock=clock,
        write_args=write_args,
        monotonic=monotonic,
    )
    lock.acquire(max_wait=max_wait, poll=poll, sleep=sleep)
    if heartbeat:
        lock.start_heartbeat()
    try:
        yield lock
    finally:
        lock.release()
