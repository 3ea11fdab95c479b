"""The rename op's logic: one run's staged UNLOAD files -> the final object name(s) the target asked for.

`rename_unload` may be called again after a crash at any point and then ends in the same state:
1. The UNLOAD manifest is the only list of staged files, and it is deleted last.
2. Final objects carry metadata naming the run's staging prefix (unique per run) and the size they must
   have; for parts, the `.manifest` written after every part is verified is the commit point.
3. Stale final objects of earlier runs, then staging, are deleted only after the output is verified;
   the one exception is parts beyond the new count once the old `.manifest` is withdrawn (nothing
   readable names them, and the new manifest must list exactly the parts that exist).
4. A re-run that finds this run's committed output skips straight to cleanup; when the staging manifest
   is gone too, that committed output is the proof the work was done.
5. All of that runs under a lease lock in S3 (`lock.py`): two runs of the same final key, even
   from different deployments, take turns instead of interleaving their writes and deletes. Every
   write and delete is fenced (`fence.py`): right before it, the lease must still run and S3 must have
   confirmed the lock ours within the last few seconds (asked again when older), and the request itself
   only applies to the object as this run saw it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from unload_assets.encryption import Encryption
from unload_assets.rename.combine import MAX_PART, MIN_PART
from unload_assets.rename.fence import Fence
from unload_assets.rename.header import HeaderStyle, column_names, compressed_member
from unload_assets.rename.lock import RenameBusy, final_key_lock
from unload_assets.rename.manifest import ManifestNotFound, StagedFile, UnloadManifest, read_manifest
from unload_assets.rename.multipart import MAX_COPY_OBJECT
from unload_assets.rename.s3ops import Traffic, delete_keys
from unload_assets.rename.stamp import RenameError, RenameJob, Written, committed, content_type, delete_stale
from unload_assets.rename.write import combine_blocker, produce
from unload_assets.s3_naming import part_key, s3_url

__all__ = [
    "FinalObject",
    "RenameBusy",
    "RenameError",
    "RenameResult",
    "SplitRefused",
    "StagedFile",
    "UnloadManifest",
    "combine_blocker",
    "rename_unload",
    "part_key",
    "read_manifest",
]

FORMATS = ("text", "csv", "json", "parquet")
COMPRESSIONS = (None, "gzip", "bzip2", "zstd")
ON_SPLIT = ("combine", "parts", "fail")
BUCKET_DEFAULT = Encryption()  # no SSE parameters: the bucket's default encryption applies


@dataclass(frozen=True)
class FinalObject:
    key: str
    size: int


@dataclass(frozen=True)
class RenameResult:
    objects: list[FinalObject]  # the final output: one object, or the parts and then their .manifest
    mode: str  # "single" | "combine" | "parts"
    staged_files: int
    fallback_reason: str | None  # why `combine` became `parts`
    staging_cleaned: bool
    client_bytes: int  # object data downloaded + uploaded by this client in this call (manifests' JSON aside)
    schema: dict | None = None  # the UNLOAD manifest's (MANIFEST VERBOSE); None once staging is gone


class SplitRefused(Exception):
    """on_split="fail" and UNLOAD wrote more than one file; nothing final was touched."""


@dataclass(frozen=True)
class RenameRequest:
    """What one rename is asked to do: the staged files of one UNLOAD (`staging_prefix`, its
    `manifest_key`) to `final_key` in `bucket`, holding `lock_key`, in the target's format.

    `header`: every staged file starts with a header line (UNLOAD ran with HEADER). `header_style`
    instead: the staged files carry none, and the final object opens with a header line in that style,
    built from the manifest's schema (`UnloadTarget.header_by_rename`); combine only.
    `encryption`: what every write asks for (the final objects, parts, COPY manifest and the lock):
    SSE-KMS with the target's key, or the bucket's default."""

    bucket: str
    staging_prefix: str
    manifest_key: str
    final_key: str
    lock_key: str
    on_split: str
    fmt: str
    compression: str | None
    header: bool
    header_style: HeaderStyle | None = None
    encryption: Encryption = BUCKET_DEFAULT

    def __post_init__(self) -> None:
        on_split, fmt, compression = self.on_split, self.fmt, self.compression
        if on_split not in ON_SPLIT or fmt not in FORMATS or compression not in COMPRESSIONS:
            raise ValueError(f"unsupported on_split={on_split!r}, fmt={fmt!r}, compression={compression!r}")
        style = self.header_style
        if style is not None and (self.header or on_split != "combine" or style.fmt != fmt):
            raise ValueError(
                "header_style is for combining headerless csv/text files (header=False, combine)"
            )


def rename_unload(
    s3: Any,
    request: RenameRequest,
    *,
    log: Callable[[str], None] = lambda m: None,
    max_copy_size: int = MAX_COPY_OBJECT,
    min_part_size: int = MIN_PART,
    max_part_size: int = MAX_PART,
    workers: int = 8,
    lease_seconds: float = 120.0,
    guard_reuse: float | None = None,
    pause: Callable[[str], None] | None = None,
) -> RenameResult:
    """Copy the staged files the UNLOAD manifest lists to the request's final key, verify, then delete
    staging.

    Holds the lock object `request.lock_key` (owner: this run's staging prefix) throughout; RenameBusy if
    another run holds it too long (a retry then waits again). The size knobs exist so tests can reach
    the multipart paths with small objects; `workers` bounds the parallel part copies (1 gives a
    deterministic call order). `lease_seconds` is the lock's lease; `guard_reuse` how long one
    confirmation of it by S3 covers the guards after it (None: `fence.REUSE` of the lease, 0: every
    guard asks S3); `pause` is called with the name of each destructive step just before its guard (a
    test stops the holder there: `fence.STEPS`).
    """
    r = request
    bucket, final_key, staging_prefix, encryption = r.bucket, r.final_key, r.staging_prefix, r.encryption
    with final_key_lock(
        s3,
        bucket=bucket,
        lock_key=r.lock_key,
        final_key=final_key,
        owner=staging_prefix,
        log=log,
        lease_seconds=lease_seconds,
        write_args=encryption.write_args(),
    ) as lock:
        job = RenameJob(
            s3=s3,
            bucket=bucket,
            final_key=final_key,
            staging_prefix=staging_prefix,
            ctype=content_type(r.fmt, r.compression),
            traffic=Traffic(),
            log=log,
            max_copy=max_copy_size,
            min_part=min_part_size,
            max_part=max_part_size,
            workers=workers,
            fence=Fence(lock, pause, guard_reuse),
            encryption=encryption,
        )
        return _rename_locked(job, r.manifest_key, r.on_split, r.fmt, r.compression, r.header, r.header_style)


def _rename_locked(
    job: RenameJob,
    manifest_key: str,
    on_split: str,
    fmt: str,
    compression: str | None,
    header: bool,
    header_style: HeaderStyle | None,
) -> RenameResult:
    s3, bucket, final_key, staging_prefix = job.s3, job.bucket, job.final_key, job.staging_prefix
    try:
        manifest = read_manifest(s3, bucket, manifest_key)
    except ManifestNotFound:
        done = committed(job)
        if done is None:
            raise RenameError(
                f"no UNLOAD manifest at {s3_url(bucket, manifest_key)} and no output of that run at "
                f"{s3_url(bucket, final_key)}: did the UNLOAD (with MANIFEST) run for this staging prefix?"
            ) from None
        job.log(f"{s3_url(bucket, final_key)} was already renamed from {staging_prefix}; nothing to do")
        return _result(done, job, staging_cleaned=True, schema=None)
    entries = manifest.entries
    outside = [e.key for e in entries if not e.key.startswith(staging_prefix)]
    if outside:  # we delete what the manifest lists: never anything outside this run's folder
        raise RenameError(f"the manifest lists {s3_url(bucket, outside[0])}, outside {staging_prefix}")
    if len(entries) > 1 and on_split == "fail":
        raise SplitRefused(
            f"UNLOAD wrote {len(entries)} files for {s3_url(bucket, final_key)} and on_split is 'fail'. "
            f"The previous output is untouched; the staged files stay in {s3_url(bucket, staging_prefix)}. "
            "Raise MAXFILESIZE with PARALLEL OFF, or choose on_split: combine or parts."
        )
    done = committed(job)
    if done is None:
        opening = None
        if header_style is not None:
            try:
                names = column_names(manifest.schema)
            except ValueError as exc:
                raise RenameError(f"{s3_url(bucket, manifest_key)}: {exc}") from None
            opening = compressed_member(header_style.line(names), compression)
        done = produce(
            job,
            entries,
            on_split=on_split,
            fmt=fmt,
            compression=compression,
            header=header,
            opening=opening,
            schema=manifest.schema,
        )
    else:
        job.log(f"an earlier attempt already committed {s3_url(bucket, final_key)}; resuming at cleanup")
    delete_stale(job, done)
    cleaned = _delete_staging(job, manifest, manifest_key)
    return _result(done, job, staging_cleaned=cleaned, schema=manifest.schema)


def _result(done: Written, job: RenameJob, *, staging_cleaned: bool, schema: dict | None) -> RenameResult:
    objects = [FinalObject(k, s) for k, s in done.objects]
    return RenameResult(
        objects,
        done.mode,
        done.staged_files,
        done.fallback_reason,
        staging_cleaned,
        job.traffic.bytes,
        schema,
    )


def _delete_staging(job: RenameJob, manifest: UnloadManifest, manifest_key: str) -> bool:
    """Data files first, the UNLOAD manifest last: while it exists, a re-run knows what to clean."""
    # This run's own folder: no other run writes there, so the guard suffices (no ETags to condition on).
    guard = job.fence.before("delete staging")
    try:
        delete_keys(job.s3, job.bucket, [e.key for e in manifest.entries], before=guard)
        delete_keys(job.s3, job.bucket, [manifest_key], before=guard)
    # The output is delivered and verified: report the leftovers (metadata and the `delivered` check),
    # don't fail. S3 errors and dropped connections count as much as per-key errors (OSError).
    except (OSError, ClientError, BotoCoreError) as exc:
        job.log(f"final output is complete, but deleting staging failed: {exc}")
        return False
    # Not logged: a line per target is an event per target (the metadata's staging_cleaned says it).
    return True
