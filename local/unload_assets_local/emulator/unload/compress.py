"""Streaming compressors that know how big their output can still get.

A file must never pass MAXFILESIZE, counted in compressed bytes, and each file must be one complete
stream. So before rows go in, the writer asks `bound(n)`: the most the finished file can grow by if
`n` more input bytes are added and the stream is then finished. gzip and zstd flush after every write,
so the bytes out so far are exact; bzip2 cannot flush, so its input since the last block it emitted
counts as if it will not compress at all.
"""

from __future__ import annotations

import bz2
import struct
import zlib
from concurrent.futures import Executor
from typing import Protocol

from unload_assets_local.emulator.unload.command import Compression

SUFFIXES = {"gzip": ".gz", "bzip2": ".bz2", "zstd": ".zst"}
GZIP_LEVEL = 6  # what `gzip` uses by default
ZSTD_LEVEL = 3  # what `zstd` uses by default


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def bound(self, n: int) -> int: ...


class Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""

    def bound(self, n: int) -> int:
        return n


class Gzip:
    """One gzip member, deflated in parallel pieces the way pigz does it.

    Each piece is raw deflate primed with the 32 KiB of input before it and ends with a sync flush,
    so the pieces concatenate into one valid deflate stream; the member's CRC and length are kept
    here. zlib releases the GIL, so pieces compress on several cores even for a single output file.
    """

    PIECE = 256 * 1024
    WINDOW = 32 * 1024
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS

    def __init__(self, pool: Executor | None = None) -> None:
        self._pool = pool
        self._crc = 0
        self._size = 0
        self._tail = b""  # the last 32 KiB of input: the next piece's dictionary
        self._started = False

    def compress(self, data: bytes) -> bytes:
        if not data:
            return b""
        pieces = [data[i : i + self.PIECE] for i in range(0, len(data), self.PIECE)]
        dicts = [self._tail] + [
            data[max(0, i - self.WINDOW) : i] for i in range(self.PIECE, len(data), self.PIECE)
        ]
        if self._pool is not None and len(pieces) > 1:
            out = list(self._pool.map(_deflate_piece, pieces, dicts))
        else:
            out = [_deflate_piece(piece, zdict) for piece, zdict in zip(pieces, dicts, strict=True)]
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._tail = (self._tail + data)[-self.WINDOW :]
        head = b"" if self._started else self.HEADER
        self._started = True
        return head + b"".join(out)

    def finish(self) -> bytes:
        last = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
        head = b"" if self._started else self.HEADER
        return head + last.flush(zlib.Z_FINISH) + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)

    def bound(self, n: int) -> int:
        # deflate's worst case is stored blocks (5 bytes per 16 KiB) plus a sync flush per piece, then
        # the final block and the trailer; the header may still be due.
        return n + (n >> 10) + 64


def _deflate_piece(piece: bytes, zdict: bytes) -> bytes:
    z = (
        zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15, zdict=zdict)
        if zdict
        else zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    )
    return z.compress(piece) + z.flush(zlib.Z_SYNC_FLUSH)


class Zstd:
    def __init__(self) -> None:
        import zstandard

        self._flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        self._z = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(self._flush_block)

    def finish(self) -> bytes:
        return self._z.flush()

    def bound(self, n: int) -> int:
        # ZSTD_compressBound plus block headers and the frame header and epilogue.
        return n + (n >> 7) + 256


class Bzip2:
    def __init__(self) -> None:
        self._z = bz2.BZ2Compressor(9)
        self._unflushed = 0  # input since (and including) the call that last produced output

    def compress(self, data: bytes) -> bytes:
        out = self._z.compress(data)
        self._unflushed = len(data) if out else self._unflushed + len(data)
        return out

    def finish(self) -> bytes:
        return self._z.flush()

    def bound(self, n: int) -> int:
        # bzip2's documented worst case: 1% plus 600 bytes.
        pending = self._unflushed + n
        return pending + pending // 100 + 1024


def make(compression: Compression | None, pool: Executor | None = None) -> Compressor:
    """A compressor for one file; `pool` runs gzip's pieces in parallel."""
    if compression is None:
        return Identity()
    if compression == "gzip":
        return Gzip(pool)
    if compression == "zstd":
        return Zstd()
    return Bzip2()


def room(compressor: Compressor, available: int) -> int:
    """The most input bytes whose worst case still fits in `available` output bytes (0 if none)."""
    if compressor.bound(0) > available:
        return 0
    low, high = 0, available
    while low < high:  # bound() is monotonic: binary search instead of inverting each formula
        mid = (low + high + 1) // 2
        if compressor.bound(mid) <= available:
            low = mid
        else:
            high = mid - 1
    return low
