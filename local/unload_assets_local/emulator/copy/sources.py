"""The files a COPY loads, read from S3: every object under the prefix or the entries of a `MANIFEST`,
each a chunk at a time and decompressed as it streams (GZIP, BZIP2, ZSTD; concatenated members too).
"""

from __future__ import annotations

import asyncio
import bz2
import json
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from unload_assets_local.emulator.copy.statement import CopyCommand, copy_error

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    key: str
    mandatory: bool = True


async def source_files(s3: Any, cmd: CopyCommand) -> list[SourceFile]:
    """What to load: the manifest's entries, or every object under the prefix (in key order)."""
    if cmd.manifest:
        body = await asyncio.to_thread(lambda: s3.get_object(Bucket=cmd.bucket, Key=cmd.key)["Body"].read())
        try:
            entries = json.loads(body)["entries"]
            files = [
                SourceFile(_key_in(cmd.bucket, e["url"]), bool(e.get("mandatory", False))) for e in entries
            ]
        except (ValueError, KeyError, TypeError):
            raise copy_error("Manifest file is not in correct json format") from None
        return files

    def listing() -> list[SourceFile]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=cmd.bucket, Prefix=cmd.key)
        return [
            SourceFile(o["Key"]) for p in pages for o in p.get("Contents", []) if not o["Key"].endswith("/")
        ]

    files = await asyncio.to_thread(listing)
    if not files:
        raise copy_error(f"The specified S3 prefix '{cmd.key}' does not exist")
    return files


def _key_in(bucket: str, url: str) -> str:
    prefix = f"s3://{bucket}/"
    if not url.startswith(prefix):
        raise copy_error("a manifest entry names another bucket than the manifest's")
    return url[len(prefix) :]


def _decompressor(compression: str | None) -> Callable[[bytes], bytes]:
    """Bytes in, bytes out, across member/frame boundaries (our combined outputs are several)."""
    if compression is None:
        return lambda data: data
    make: Callable[[], Any]
    if compression == "zstd":
        import zstandard

        make = zstandard.ZstdDecompressor().decompressobj
    elif compression == "gzip":
        make = lambda: zlib.decompressobj(31)  # noqa: E731
    else:
        make = bz2.BZ2Decompressor
    state = {"d": make()}

    def feed(data: bytes) -> bytes:
        out = bytearray()
        while data:
            d = state["d"]
            out += d.decompress(data)
            if not getattr(d, "eof", False):
                break
            data = d.unused_data
            state["d"] = make()
        return bytes(out)

    return feed


async def file_bytes(
    s3: Any, bucket: str, source: SourceFile, compression: str | None
) -> AsyncIterator[bytes]:
    """One file's decompressed bytes, a chunk at a time; nothing for a missing optional file."""
    try:
        body = await asyncio.to_thread(lambda: s3.get_object(Bucket=bucket, Key=source.key)["Body"])
    except s3.exceptions.NoSuchKey:
        if source.mandatory:
            raise copy_error(
                f"S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey "
                f"(mandatory file s3://{bucket}/{source.key})"
            ) from None
        return
    decompress = _decompressor(compression)
    try:
        while chunk := await asyncio.to_thread(body.read, CHUNK):
            if data := decompress(chunk):
                yield data
    finally:
        body.close()


async def skip_lines(chunks: AsyncIterator[bytes], lines: int) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        while lines and chunk:
            newline = chunk.find(b"\n")
            if newline < 0:
                chunk = b""
                break
            chunk, lines = chunk[newline + 1 :], lines - 1
        if chunk:
            yield chunk
