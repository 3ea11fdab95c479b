"""What the final output of a run looks like in S3: how it is stamped, verified, recognised and tidied.

Every final object carries user metadata naming the staging prefix of the run that wrote it (unique per
run) and the size it must have. That stamp is what lets a re-run after a crash tell "this run already
committed its output" from "an earlier run's output is still there".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from unload_assets.encryption import Encryption
from unload_assets.rename.fence import Fence, condition, seen_etag
from unload_assets.rename.manifest import StagedFile, parse_copy_manifest
from unload_assets.rename.multipart import copy_any_size
from unload_assets.rename.s3ops import Changed, Traffic, delete_keys, head, list_etags, run_jobs
from unload_assets.s3_naming import manifest_key_for, part_listing_prefix, part_number, s3_url

TAG = "unload-staging"  # the run's staging prefix, percent-encoded (metadata must be ASCII)
SIZE = "unload-size"  # bytes the object must have; re-checked before a re-run trusts it
MODE = "unload-mode"
STAGED = "unload-staged-files"
FALLBACK = "unload-fallback"
SOURCE = "unload-source"  # the staged file a part was copied from

_TYPES = {
    "text": "text/plain",
    "csv": "text/csv",
    "json": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "zstd": "application/zstd"}


class RenameError(RuntimeError):
    """The rename cannot go on safely; staging is left as it was for a re-run or for inspection."""


@dataclass(frozen=True)
class Written:
    objects: list[tuple[str, int]]  # (key, size): one object, or the parts and then the .manifest
    mode: str
    staged_files: int
    fallback_reason: str | None


@dataclass(frozen=True)
class RenameJob:
    s3: Any
    bucket: str
    final_key: str
    staging_prefix: str
    ctype: str
    traffic: Traffic
    log: Callable[[str], None]
    max_copy: int
    min_part: int
    max_part: int
    workers: int
    fence: Fence  # guards and conditions every destructive request (fence.py)
    encryption: Encryption = Encryption()  # what every write asks for (SSE-KMS with the target's key)

    @property
    def tag(self) -> str:
        return quote(self.staging_prefix, safe="")

    def run(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        return run_jobs(jobs, self.workers)


def content_type(fmt: str, compression: str | None) -> str:
    # No Content-Encoding: browsers and some SDKs would silently decompress a .gz download.
    return _COMPRESSED[compression] if compression else _TYPES[fmt]


def object_metadata(job: RenameJob, mode: str, staged_files: int, reason: str | None) -> dict[str, str]:
    meta = {TAG: job.tag, MODE: mode, STAGED: str(staged_files)}
    if reason:
        meta[FALLBACK] = quote(reason, safe=" :,'")
    return meta


def verify(job: RenameJob, key: str, expected: int) -> None:
    found = head(job.s3, job.bucket, key)
    size = None if found is None else int(found["ContentLength"])
    if size != expected:
        raise RenameError(
            f"{s3_url(job.bucket, key)} holds {'no object' if size is None else f'{size} bytes'} after the "
            f"copy, expected {expected} bytes; staging under {job.staging_prefix} is kept: re-run to retry"
        )


def _copied(job: RenameJob, found: dict[str, Any] | None, source: str, size: int) -> bool:
    """Whether HeadObject `found` is this run's copy of `source` (percent-encoded), complete."""
    meta = {} if found is None else found.get("Metadata", {})
    return (
        found is not None
        and meta.get(TAG) == job.tag
        and meta.get(SOURCE) == source
        and int(found["ContentLength"]) == size
    )


def copy_verified(job: RenameJob, staged: StagedFile, dest: str, meta: dict[str, str], step: str) -> None:
    """Server-side copy `staged` -> `dest` and check its size; skipped if a crashed attempt finished it.

    The copy overwrites only the object seen here (If-Match its ETag, If-None-Match when there was none).
    """
    source = quote(staged.key, safe="")
    found = head(job.s3, job.bucket, dest)
    if _copied(job, found, source, staged.size):
        return
    seen = seen_etag(found)

    def ours() -> bool:
        return _copied(job, head(job.s3, job.bucket, dest), source, staged.size)

    with job.fence.refusal(step, dest, seen, ours):
        copy_any_size(
            job.s3,
            bucket=job.bucket,
            source_key=staged.key,
            source_size=staged.size,
            dest_key=dest,
            metadata={**meta, SOURCE: source, SIZE: str(staged.size)},
            content_type=job.ctype,
            traffic=job.traffic,
            max_copy_size=job.max_copy,
            max_part_size=job.max_part,
            workers=job.workers,
            condition=condition(seen),
            before=job.fence.before(step),
            write_args=job.encryption.write_args(),
        )
    verify(job, dest, staged.size)


def _stamped(job: RenameJob, key: str) -> dict[str, Any] | None:
    """HeadObject of `key` if this run wrote it completely (stamp matches, size as recorded)."""
    found = head(job.s3, job.bucket, key)
    meta = {} if found is None else found.get("Metadata", {})
    if found is None or meta.get(TAG) != job.tag or meta.get(SIZE) != str(found["ContentLength"]):
        return None
    return found


def wrote(job: RenameJob, key: str, size: int) -> bool:
    """Whether `key` holds this run's complete write of `size` bytes (a refused retry of our own write)."""
    found = _stamped(job, key)
    return found is not None and int(found["ContentLength"]) == size


def committed(job: RenameJob) -> Written | None:
    """This run's output if it is already complete in S3 (a crashed attempt got past its commit)."""
    single = _stamped(job, job.final_key)
    mkey = manifest_key_for(job.final_key)
    found = single or _stamped(job, mkey)
    if found is None:
        return None
    meta = found["Metadata"]
    reason = unquote(meta[FALLBACK]) if FALLBACK in meta else None
    size = int(found["ContentLength"])
    if single is not None:
        return Written([(job.final_key, size)], meta.get(MODE, "single"), int(meta.get(STAGED, 1)), reason)
    body = job.s3.get_object(Bucket=job.bucket, Key=mkey)["Body"].read()
    objects: list[tuple[str, int]] = []
    for key, length in parse_copy_manifest(body, bucket=job.bucket):
        part = head(job.s3, job.bucket, key)
        if part is None or int(part["ContentLength"]) != length:
            return None  # a part went missing since: not trustworthy, redo from staging if it still exists
        objects.append((key, int(part["ContentLength"])))
    return Written([*objects, (mkey, size)], "parts", int(meta.get(STAGED, len(objects))), reason)


def stale_parts(job: RenameJob, keep: set[str]) -> dict[str, str]:
    """Parts of `final_key` (from any run, any digit count) that are not in `keep`, with their ETags."""
    listed = list_etags(job.s3, job.bucket, part_listing_prefix(job.final_key))
    return {k: e for k, e in listed.items() if part_number(job.final_key, k) is not None and k not in keep}


def delete_parts(job: RenameJob, parts: dict[str, str], step: str) -> None:
    """Delete `parts` (key -> ETag seen), each only while it is still the object seen."""
    try:
        delete_keys(job.s3, job.bucket, parts, etags=parts, before=job.fence.before(step))
    except Changed as exc:
        raise job.fence.changed(step, exc.key, exc.code) from None


def delete_stale(job: RenameJob, done: Written) -> None:
    """After `done` is verified: remove whatever else an earlier run left under this final name."""
    candidates = stale_parts(job, {key for key, _ in done.objects})
    # Parts replace a single object and vice versa; HEAD first so nothing is reported (or, in a
    # versioned bucket, delete-marked) that was not there.
    other = job.final_key if done.mode == "parts" else manifest_key_for(job.final_key)
    found = head(job.s3, job.bucket, other)
    # Alone and first: a batch delete that fails halfway must not leave an old manifest listing parts
    # that are already gone.
    if found is not None and job.fence.delete_seen("delete other", other, found["ETag"]):
        job.log(f"removed {other}, left by an earlier run")
    if candidates:
        delete_parts(job, candidates, "delete stale parts")
        keys = list(candidates)
        job.log(
            f"removed {len(keys)} part(s) left by an earlier run: {', '.join(keys[:5])}"
            + (" ..." if len(keys) > 5 else "")
        )
