"""The header line of a combined CSV or text output, written once by the rename instead of by UNLOAD.

UNLOAD's HEADER puts the header line at the top of every file it writes. Several compressed files with a
header each cannot become one object without recompressing (the line sits inside each stream), so a
target that combines its files runs UNLOAD without HEADER and the rename opens the final object with
one header member built here: the column names come from the `MANIFEST VERBOSE` schema, written as
HEADER writes them for the target's format, delimiter and quoting, and compressed as a member of its
own (gzip members, bzip2 streams and zstd frames each concatenate into one valid stream). Pure: no I/O.
"""

from __future__ import annotations

import bz2
import gzip
import struct
from collections.abc import Sequence
from dataclasses import dataclass

_ZSTD_MAGIC = struct.pack("<I", 0xFD2FB528)
_ZSTD_MAX_BLOCK = 128 * 1024


@dataclass(frozen=True)
class HeaderStyle:
    """How UNLOAD's HEADER writes the column names for one target."""

    fmt: str  # "csv" or "text"
    delimiter: str | None = None
    addquotes: bool = False

    def line(self, names: Sequence[str]) -> bytes:
        """The header line, newline included: CSV quotes a name holding a quote, the delimiter or a line
        break (doubling its quotes); text with ADDQUOTES puts every name in double quotes."""
        delimiter = self.delimiter or ("," if self.fmt == "csv" else "|")
        fields = []
        for name in names:
            if self.fmt == "csv" and any(ch in name for ch in ('"', delimiter, "\n", "\r")):
                name = '"' + name.replace('"', '""') + '"'
            elif self.fmt == "text" and self.addquotes:
                name = f'"{name}"'
            fields.append(name)
        return (delimiter.join(fields) + "\n").encode()


def column_names(schema: dict | None) -> list[str]:
    """The column names of a `MANIFEST VERBOSE` schema, in order; ValueError if it has none."""
    elements = (schema or {}).get("elements")
    if not isinstance(elements, list) or not elements:
        raise ValueError("the UNLOAD manifest has no schema (was it written with MANIFEST VERBOSE?)")
    names = [e.get("name") if isinstance(e, dict) else None for e in elements]
    if not all(isinstance(n, str) for n in names):
        raise ValueError("the UNLOAD manifest's schema has an element without a name")
    return [str(n) for n in names]


def compressed_member(data: bytes, compression: str | None) -> bytes:
    """`data` as one self-contained member of `compression` (deterministic: no time stamp)."""
    if compression is None:
        return data
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "bzip2":
        return bz2.compress(data)
    if compression == "zstd":
        return zstd_raw_frame(data)
    raise ValueError(f"unknown compression {compression!r}")


def zstd_raw_frame(data: bytes) -> bytes:
    """One zstd frame holding `data` in raw (stored) blocks, per RFC 8878; no library needed.

    Frame header: single segment, 4-byte content size, no checksum, no dictionary. Each block header is
    3 bytes little-endian: last-block bit, block type 0 (raw) in bits 1-2, size in the bits above.
    """
    frame = bytearray(_ZSTD_MAGIC + bytes([0b1010_0000]) + struct.pack("<I", len(data)))
    chunks = [data[i : i + _ZSTD_MAX_BLOCK] for i in range(0, len(data), _ZSTD_MAX_BLOCK)] or [b""]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        frame += (len(chunk) << 3 | int(last)).to_bytes(3, "little") + chunk
    return bytes(frame)
