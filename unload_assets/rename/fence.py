"""Fencing the rename: a holder that lost the final key's lock changes nothing more.

A lease alone does not fence: a holder that pauses (a long GC, a frozen VM, a stalled network) past its
lease right after looking at it goes on writing and deleting while the next holder works. S3 conditions
apply only to the object a request writes or deletes, so the lock object's ETag cannot guard a write of
another key. Every destructive request of the rename (`STEPS`) is therefore fenced twice:

1. `Fence.guard(step)`, immediately before the request (every request: each DeleteObjects batch, each
   part copied, each commit): no renewal found the lock taken over, our own clock says the lease still
   runs, and S3 confirmed the lock ours at most `reuse` seconds ago (`REUSE` of the lease: 5 s of the
   default two minutes; `FinalKeyLock.check`). When the last confirmation is older, the guard asks S3
   itself (HeadObject If-Match <the ETag of our last lease write>); our own conditional lease writes
   (acquire, each renewal) confirm it too. So one HeadObject fences every request issued within 5 s
   after it: a batch of deletes (staging's files, then its manifest), the commit after quick copies,
   the parts copied in parallel (guards made at once wait for one HeadObject and share it). Any guard
   that fails -> RenameBusy.
2. The request is conditional on its own object as this holder saw it before the guard: an overwrite
   If-Match <ETag seen>, or If-None-Match "*" where there was none; a delete If-Match <ETag seen>
   (DeleteObjects: an ETag per object). A holder that took the lock over and wrote that key meanwhile
   changed its ETag, so S3 refuses the request, and `Fence.refusal` turns that into RenameBusy.

No request goes without its guard, not even one whose condition S3 checks: a condition sees only its own
key, so a request on a key the next holder has not reached yet would pass it after the lock was lost.

What is left: a request that S3 applies after another holder took over. That takes more time between
the confirmation the request's guard relied on and S3 applying the request than our lease had left at
that confirmation. A guard issues its request at most `reuse` after the confirmation, and while the
heartbeat keeps up at least two thirds of the lease is left at any confirmation, so it takes a stall of
more than 75 s between a guard and S3 applying its request (the default lease: 80 s, less the 5 s of
reuse). Less after failed renewals, or by as much as the other worker's clock runs ahead: a takeover our
clock cannot see, made within the `reuse` before a guard, passes that guard (a HeadObject per request
would have caught it). Step 2 closes that window for every key the other holder wrote, on stores that
check the condition: Amazon S3 does for all of these requests; moto 5.2.5 checks PutObject
If-Match/If-None-Match, DeleteObject If-Match and CompleteMultipartUpload If-None-Match, and ignores
CopyObject's conditions, CompleteMultipartUpload's If-Match and the ETags in DeleteObjects. Nothing closes
it for a key the other holder never wrote (a part beyond the other's count, say): If-None-Match "*" lets
that creation through, next to the other's complete output. Staging is this run's own (no other run
writes under its prefix): its deletion is guarded, not conditional.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from unload_assets.rename.lock import FinalKeyLock, RenameBusy
from unload_assets.rename.s3ops import CONFLICT, NOT_FOUND, head

# How long one confirmation by S3 that the lock is ours covers later guards, as a share of the lease
# (5 s of the default two minutes): well inside the two thirds of it the heartbeat keeps ahead.
REUSE = 1 / 24

# Every request of the rename that deletes or overwrites a visible object, by the step that makes it.
STEPS = (
    "withdraw manifest",  # parts: DeleteObject of the previous COPY manifest, before its parts change
    "delete extra parts",  # parts: DeleteObjects of parts beyond the new count, before the commit
    "write part",  # parts: CopyObject (or CompleteMultipartUpload above 5 GiB) of one part
    "write manifest",  # parts: PutObject of the COPY manifest, the commit point
    "write object",  # single/combined/empty: CopyObject, CompleteMultipartUpload or PutObject
    "delete other",  # after the commit: DeleteObject of the other layout's key (object or manifest)
    "delete stale parts",  # after the commit: DeleteObjects of parts an earlier run left
    "delete staging",  # last: DeleteObjects of the staged files, then of the UNLOAD manifest
)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def condition(etag: str | None) -> dict[str, str]:
    """The write condition for an object seen with `etag` (None: there was no object)."""
    return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}


class Fence:
    """The guard and the refusals of one holder of the final key's lock (`rename_unload` builds it).

    `reuse`: seconds one confirmation by S3 covers later guards (None: `REUSE` of the lease; 0: every
    guard asks S3). `pause` is a test hook: it is called with the step's name before each guard, so that
    a test can stop the holder there, past its lease, and see that it changes nothing afterwards.
    """

    def __init__(
        self, lock: FinalKeyLock, pause: Callable[[str], None] | None = None, reuse: float | None = None
    ) -> None:
        self.lock, self.pause = lock, pause
        self.reuse = lock.lease * REUSE if reuse is None else reuse

    def guard(self, step: str) -> None:
        """Right before a request of `step`: RenameBusy unless the lock is still ours (see the module)."""
        if step not in STEPS:
            raise ValueError(f"{step!r} is not a fenced step of the rename ({', '.join(STEPS)})")
        if self.pause is not None:
            self.pause(step)
        self.lock.check(step, reuse=self.reuse)

    def before(self, step: str) -> Callable[[], None]:
        """The guard of `step`, for code that makes the request itself (multipart, batches)."""
        return lambda: self.guard(step)

    @contextmanager
    def refusal(
        self, step: str, key: str, seen: str | None, ours: Callable[[], bool] | None = None
    ) -> Iterator[None]:
        """Turn S3 refusing a conditional request on `key` (seen with ETag `seen`) into RenameBusy.

        `ours`: whether the object now at `key` is this run's own write; then a refusal was boto's retry
        of a write whose answer was lost, and the step is done.
        """
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in NOT_FOUND and (not seen or head(self.lock.s3, self.lock.bucket, key) is not None):
                raise  # not about `key` (a staged source that is missing, say): report it as it is
            if code not in CONFLICT + NOT_FOUND:
                raise
            if ours is not None and ours():
                return
            raise self.changed(step, key, code) from None

    def delete_seen(self, step: str, key: str, etag: str) -> bool:
        """DeleteObject If-Match `etag`, guarded; False if the object was gone already."""
        self.guard(step)
        try:
            self.lock.s3.delete_object(Bucket=self.lock.bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            code = _code(exc)
            if code in NOT_FOUND:  # gone: our own delete whose answer was lost (boto retried), say
                return False
            if code in CONFLICT:
                raise self.changed(step, key, code) from None
            raise
        return True

    def changed(self, step: str, key: str, code: str) -> RenameBusy:
        lock = self.lock
        return RenameBusy(
            f"s3://{lock.bucket}/{key} is no longer as this run saw it ({code}): another run has taken the "
            f"lock {lock.where} over and written it; stopped at {step!r} of s3://{lock.bucket}/"
            f"{lock.final_key}, changing nothing more. The rename will be retried."
        )


def seen_etag(found: dict[str, Any] | None) -> str | None:
    """The ETag of a HeadObject answer (None: no object)."""
    return None if found is None else str(found["ETag"])
