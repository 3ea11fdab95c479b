"""Data files: their names (Hive partition folders included), and filling them with rows up to MAXFILESIZE.

A lane is one slice's output (within one partition folder with PARTITION BY). It writes part 00, and
when the next rows would push that file past MAXFILESIZE (compressed bytes for compressed output), it
finishes the file and starts the next part. Rows are never split; only a single row larger than
MAXFILESIZE makes a file exceed it, in a file of its own. With HEADER every file starts with the
header line, and it counts as a record, as on Redshift.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import accumulate

from unload_assets_local.emulator.unload import compress
from unload_assets_local.emulator.unload.command import UnloadCommand
from unload_assets_local.emulator.unload.uploads import ObjectStream, S3Target

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Characters Hive escapes in partition folder names (as %XX), besides control characters.
_HIVE_SPECIAL = frozenset("\"#%'*/:=?\\\x7f{[]^")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def suffix(cmd: UnloadCommand) -> str:
    """What follows each data file's name: EXTENSION, then the compression suffix, or .parquet."""
    ext = "." + cmd.extension.lstrip(".") if cmd.extension else ""
    if cmd.format == "parquet":
        return ext or ".parquet"
    comp = compress.SUFFIXES.get(cmd.compression or "", "")
    return ext + comp if comp and not ext.endswith(comp) else ext


class Naming:
    def __init__(self, cmd: UnloadCommand) -> None:
        self.parallel = cmd.parallel
        self.base = cmd.prefix
        if cmd.partition_by and self.base and not self.base.endswith("/"):
            self.base += "/"  # PARTITION BY adds the slash Redshift adds
        self.suffix = suffix(cmd)

    def key(self, slice_no: int, part: int, folder: str = "") -> str:
        name = f"{slice_no:04d}_part_{part:02d}" if self.parallel else f"{part:03d}"
        return f"{self.base}{folder}{name}{self.suffix}"

    @property
    def manifest_key(self) -> str:
        return f"{self.base}manifest"


def hive_folder(names: tuple[str, ...], values: tuple[bytes | None, ...]) -> str:
    """`col=value/...` for one partition; NULL is Hive's default partition."""
    parts = []
    for name, raw in zip(names, values, strict=True):
        if raw is None:
            text = HIVE_NULL
        else:
            value = raw.decode(errors="replace")
            text = "".join(f"%{ord(ch):02X}" if ch in _HIVE_SPECIAL or ord(ch) < 32 else ch for ch in value)
        parts.append(f"{name}={text}/")
    return "".join(parts)


@dataclass
class FileResult:
    key: str
    url: str
    size: int
    records: int
    slice: int
    start: datetime
    end: datetime


class Output:
    """What all lanes of one UNLOAD share: the command, names, the S3 target and the finished files."""

    def __init__(
        self, cmd: UnloadCommand, target: S3Target, header: bytes | None, zip_pool: Executor | None = None
    ) -> None:
        self.cmd = cmd
        self.zip_pool = zip_pool
        self.naming = Naming(cmd)
        self.target = target
        self.header = header
        self.files: list[FileResult] = []
        self._lock = threading.Lock()
        self._folders: set[str] = set()

    def open(self, slice_no: int, part: int, folder: str) -> ObjectStream:
        if self.cmd.partition_by and self.cmd.cleanpath:
            with self._lock:  # CLEANPATH empties only the partition folders this UNLOAD writes to
                fresh = folder not in self._folders
                self._folders.add(folder)
                if fresh:
                    self.target.clean(self.naming.base + folder)
        return self.target.open(self.naming.key(slice_no, part, folder))

    def finished(self, result: FileResult) -> None:
        with self._lock:
            self.files.append(result)


class _File:
    def __init__(self, stream: ObjectStream, compressor: compress.Compressor, limit: int) -> None:
        self.stream = stream
        self.compressor = compressor
        self.limit = limit
        self.records = 0
        self.data_rows = 0
        self.start = utcnow()

    def room(self) -> int:
        return compress.room(self.compressor, self.limit - self.stream.size)

    def write(self, data: bytes, records: int) -> None:
        self.stream.write(self.compressor.compress(data))
        self.records += records

    def close(self) -> int:
        self.stream.write(self.compressor.finish())
        return self.stream.close()


class LineWriter:
    """One lane of line-oriented output (text, CSV, JSON). Blocking: runs in a worker thread."""

    def __init__(self, output: Output, slice_no: int, folder: str = "") -> None:
        self.output = output
        self.slice_no = slice_no
        self.folder = folder
        self.part = 0
        self._file: _File | None = None
        self._make: Callable[[], compress.Compressor] = lambda: compress.make(
            output.cmd.compression, output.zip_pool
        )

    def write(self, rows: list[bytes]) -> None:
        while rows:
            file = self._file or self._open()
            space = file.room()
            sizes = list(accumulate(map(len, rows)))
            if sizes[-1] <= space:
                file.write(b"".join(rows), len(rows))
                file.data_rows += len(rows)
                return
            fit = bisect_right(sizes, space)
            if fit == 0 and file.data_rows == 0:
                fit = 1  # a row bigger than MAXFILESIZE still has to go somewhere
            if fit == 0:
                self._roll()
                continue
            file.write(b"".join(rows[:fit]), fit)
            file.data_rows += fit
            rows = rows[fit:]

    def touch(self) -> None:
        """Make sure a file exists (the one empty file of a zero-row text or CSV unload)."""
        if self._file is None:
            self._open()

    def close(self) -> None:
        if self._file is not None:
            self._roll()

    def _open(self) -> _File:
        stream = self.output.open(self.slice_no, self.part, self.folder)
        self._file = _File(stream, self._make(), self.output.cmd.maxfilesize)
        if self.output.header is not None:
            self._file.write(self.output.header, 1)
        return self._file

    def _roll(self) -> None:
        file, self._file = self._file, None
        assert file is not None
        size = file.close()
        target = self.output.target
        self.output.finished(
            FileResult(
                file.stream.key,
                target.url(file.stream.key),
                size,
                file.records,
                self.slice_no,
                file.start,
                utcnow(),
            )
        )
        self.part += 1
