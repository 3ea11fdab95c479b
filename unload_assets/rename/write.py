"""Writing a run's final output: one object, one combined object, or parts plus a COPY manifest.

Each writer verifies what it wrote (HeadObject sizes) before returning; nothing here deletes staging.
"""

from __future__ import annotations

from functools import partial

from unload_assets.rename.combine import CombineImpossible, PartSpec, Piece, plan_combine, plan_with_opening
from unload_assets.rename.empty import empty_body
from unload_assets.rename.fence import condition, seen_etag
from unload_assets.rename.manifest import StagedFile, render_copy_manifest
from unload_assets.rename.multipart import server_side, write_multipart
from unload_assets.rename.s3ops import first_line_length, head
from unload_assets.rename.stamp import (
    SIZE,
    RenameError,
    RenameJob,
    Written,
    copy_verified,
    delete_parts,
    object_metadata,
    stale_parts,
    verify,
    wrote,
)
from unload_assets.s3_naming import manifest_key_for, part_key, s3_url


def combine_blocker(fmt: str, compression: str | None, header: bool) -> str | None:
    """Why several staged files of this format cannot become one valid object, or None if they can."""
    if fmt == "parquet":
        return "parquet cannot be combined: every file carries its own footer and row groups"
    if header and compression:
        return f"HEADER with {compression}: the repeated header lines sit inside compressed streams"
    return None


def produce(
    job: RenameJob,
    entries: list[StagedFile],
    *,
    on_split: str,
    fmt: str,
    compression: str | None,
    header: bool,
    opening: bytes | None = None,
    schema: dict | None = None,
) -> Written:
    """The final output for `entries` (on_split="fail" with several entries is refused by the caller).

    `opening`: the header member the rename writes on top (the staged files carry no header).
    `schema`: the UNLOAD manifest's, for the empty Parquet file of a day without rows.
    """
    if opening is not None:
        return write_opened(job, entries, opening)
    if not entries:  # no rows, no staged file: still a valid object of the format at the final key
        try:
            data = empty_body(fmt, compression, schema)
            return write_opened(job, [], data) if data else write_empty(job)
        except ValueError as exc:
            job.log(f"no rows, and {exc}; writing an empty manifest of parts instead")
            return write_parts(job, entries, f"no rows, and {exc}")
    if len(entries) <= 1:
        return write_single(job, entries)
    if on_split == "parts":
        return write_parts(job, entries, None)
    reason = combine_blocker(fmt, compression, header)
    if reason is None:
        try:
            return write_combined(job, entries, header)
        except CombineImpossible as exc:
            reason = str(exc)
    job.log(f"on_split is 'combine' but {reason}; writing {len(entries)} parts plus a manifest instead")
    return write_parts(job, entries, reason)


def write_empty(job: RenameJob) -> Written:
    """A zero-byte object at the final key (an uncompressed text, CSV or JSON day without rows)."""
    meta = {**object_metadata(job, "single", 0, None), SIZE: "0"}
    _write_final(job, [], [], meta, 0)
    job.log(f"no rows: an empty object at {s3_url(job.bucket, job.final_key)}")
    return Written([(job.final_key, 0)], "single", 0, None)


def write_single(job: RenameJob, entries: list[StagedFile]) -> Written:
    """One staged file -> exactly the final key."""
    [entry] = entries
    copy_verified(job, entry, job.final_key, object_metadata(job, "single", 1, None), "write object")
    # Not logged: the materialisation says it (delivered_as single, the object and its size), and a log
    # line per target is an event per target (the combined and parts cases log how they were built).
    return Written([(job.final_key, entry.size)], "single", 1, None)


def _header_skips(job: RenameJob, entries: list[StagedFile]) -> list[int]:
    """Bytes to skip at the start of each piece: the header line of all but the first non-empty one."""
    probes = [partial(first_line_length, job.s3, job.bucket, e.key, e.size, job.traffic) for e in entries]
    found = job.run([p for p, e in zip(probes, entries, strict=True) if e.size])
    lines = iter(found)
    skips: list[int] = []
    first: bytes | None = None
    for e in entries:
        length, line = next(lines) if e.size else (0, b"")
        if e.size and first is None:
            first = line  # it opens the combined object, header included
            length = 0
        elif e.size and line != first:
            raise RenameError(
                f"{s3_url(job.bucket, e.key)} starts with {line[:80]!r}, not the header {first!r}; "
                "refusing to combine files that do not share one header"
            )
        skips.append(length)
    return skips


def write_combined(job: RenameJob, entries: list[StagedFile], header: bool) -> Written:
    """Several staged files -> ONE object (multipart); repeated CSV headers left out by byte range."""
    skips = _header_skips(job, entries) if header else [0] * len(entries)
    pieces = [Piece(e.size, skip) for e, skip in zip(entries, skips, strict=True)]
    plan = plan_combine(pieces, pin_first=header, min_part=job.min_part, max_part=job.max_part)
    return _write_stitched(job, entries, plan, [e.key for e in entries], "combine")


def write_opened(job: RenameJob, entries: list[StagedFile], opening: bytes) -> Written:
    """`opening` (the header member), then every staged file, as ONE object at the final key.

    Also for one staged file, or none (zero rows: the object is the header line alone, or the valid
    empty object of `empty_output`).
    """
    pieces = [Piece(e.size) for e in entries]
    try:
        plan = plan_with_opening(len(opening), pieces, min_part=job.min_part, max_part=job.max_part)
    except CombineImpossible as exc:  # files without their header can't become parts either
        where = s3_url(job.bucket, job.final_key)
        raise RenameError(f"cannot write {where} as one object: {exc}") from None
    mode = "combine" if len(entries) > 1 else "single"
    return _write_stitched(job, entries, plan, [opening, *(e.key for e in entries)], mode)


def _write_stitched(
    job: RenameJob, entries: list[StagedFile], plan: list[PartSpec], sources: list[str | bytes], mode: str
) -> Written:
    expected = sum(p.size for p in plan)
    meta = {**object_metadata(job, mode, len(entries), None), SIZE: str(expected)}
    _write_final(job, sources, plan, meta, expected)
    copies = sum(server_side(p, sources) for p in plan)
    job.log(
        f"combined {len(entries)} staged file(s) into {s3_url(job.bucket, job.final_key)} ({expected:,} B): "
        f"{copies} server-side part(s), {len(plan) - copies} uploaded; {job.traffic.bytes:,} B via client"
    )
    return Written([(job.final_key, expected)], mode, len(entries), None)


def _write_final(
    job: RenameJob, sources: list[str | bytes], plan: list[PartSpec], meta: dict[str, str], size: int
) -> None:
    """Assemble the final object (no plan: an empty one) over exactly the object seen, and verify it."""
    key = job.final_key
    seen = seen_etag(head(job.s3, job.bucket, key))
    with job.fence.refusal("write object", key, seen, lambda: wrote(job, key, size)):
        write_multipart(
            job.s3,
            bucket=job.bucket,
            dest_key=key,
            sources=sources,
            plan=plan,
            metadata=meta,
            content_type=job.ctype,
            traffic=job.traffic,
            workers=job.workers,
            condition=condition(seen),
            before=job.fence.before("write object"),
            write_args=job.encryption.write_args(),
        )
    verify(job, key, size)


def write_parts(job: RenameJob, entries: list[StagedFile], reason: str | None) -> Written:
    """`<stem>.part-NNN<suffixes>` in manifest order, then `<final key>.manifest`: the commit point."""
    mkey = manifest_key_for(job.final_key)
    found = head(job.s3, job.bucket, mkey)
    # Its parts are about to be overwritten: readers get "no manifest" rather than a mix of two runs.
    if found is not None and job.fence.delete_seen("withdraw manifest", mkey, found["ETag"]):
        job.log(f"withdrew the previous {s3_url(job.bucket, mkey)} before overwriting its parts")
    parts = [(part_key(job.final_key, i), e) for i, e in enumerate(entries, start=1)]
    # No manifest names them any more: parts beyond this run's count go before the commit, so that the
    # manifest written below lists exactly the parts that exist, even if this run stops right after it.
    extra = stale_parts(job, {k for k, _ in parts})
    if extra:
        delete_parts(job, extra, "delete extra parts")
        job.log(f"removed {len(extra)} part(s) beyond this run's {len(parts)}, left by an earlier run")
    meta = object_metadata(job, "parts", len(entries), reason)
    job.run([partial(copy_verified, job, e, k, meta, "write part") for k, e in parts])
    body = render_copy_manifest(job.bucket, [(k, e.size) for k, e in parts])
    # Withdrawn above (or never there): the commit creates it, and only if nobody else did meanwhile.
    with job.fence.refusal("write manifest", mkey, None, lambda: wrote(job, mkey, len(body))):
        job.fence.guard("write manifest")
        job.s3.put_object(
            Bucket=job.bucket,
            Key=mkey,
            Body=body,
            ContentType="application/json",
            Metadata={**meta, SIZE: str(len(body))},
            **job.encryption.write_args(),
            **condition(None),
        )
    verify(job, mkey, len(body))
    job.log(f"{len(entries)} staged file(s) -> {len(parts)} part(s) + {s3_url(job.bucket, mkey)}")
    return Written([(k, e.size) for k, e in parts] + [(mkey, len(body))], "parts", len(entries), reason)
