"""FORMAT PARQUET: PostgreSQL CSV batches -> Arrow tables -> Parquet files streamed to S3.

Each batch becomes one row group (SNAPPY, as Redshift writes). Redshift itself only approximates
MAXFILESIZE for Parquet; here a file is finished before a row group that, judged by the previous one,
would push it past the limit, and batches are never bigger than MAXFILESIZE worth of CSV.
"""

from __future__ import annotations

import io
from typing import Any

from unload_assets_local.emulator.unload.columns import ColumnInfo, arrow_type
from unload_assets_local.emulator.unload.command import UnloadError
from unload_assets_local.emulator.unload.writers import FileResult, Output, hive_folder, utcnow

# Rows are converted in batches of this much CSV, each written as one row group (an explicit
# ROWGROUPSIZE sets the batch instead). Redshift aims at 32 MB row groups; small batches give smaller
# row groups but keep a 10M-row unload under 200 MB of memory.
DEFAULT_ROWGROUP = 4 * 1024 * 1024


def require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UnloadError(
            "UNLOAD: FORMAT PARQUET needs pyarrow in the emulator's environment: "
            "pip install 'unload_assets[parquet]'"
        ) from None


class CsvBatches:
    """Turns PostgreSQL CSV rows (data columns, then partition values) into Arrow tables."""

    def __init__(self, data_columns: list[ColumnInfo], partitions: int) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self.names = [c.name for c in data_columns]
        self.schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in data_columns])
        keys = [f"_c{i}" for i in range(len(data_columns))] + [f"_p{i}" for i in range(partitions)]
        types: dict[str, Any] = {f"_c{i}": arrow_type(c) for i, c in enumerate(data_columns)}
        types.update({f"_p{i}": pa.string() for i in range(partitions)})
        self._read = pacsv.ReadOptions(column_names=keys, block_size=1 << 20, use_threads=False)
        self._parse = pacsv.ParseOptions(newlines_in_values=True)
        self._convert = pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],  # PostgreSQL CSV: NULL is an empty unquoted field, '' is ""
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        )
        self.partitions = partitions

    def table(self, data: bytes | bytearray) -> tuple[Any, list[Any]]:
        """(data table, partition value columns) for one batch of CSV rows."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        if not data:  # zero rows: the file holds the schema alone (Arrow's CSV reader refuses empty input)
            return self.schema.empty_table(), []
        try:
            raw = pacsv.read_csv(
                pa.py_buffer(data),
                read_options=self._read,
                parse_options=self._parse,
                convert_options=self._convert,
            )
        except pa.ArrowInvalid as exc:
            raise UnloadError(f"UNLOAD: a value cannot be written to Parquet: {exc}") from None
        width = len(self.names)
        table = pa.Table.from_arrays(raw.columns[:width], schema=self.schema)
        return table, raw.columns[width:]


class ParquetWriter:
    """One lane of Parquet output. Blocking: runs in a worker thread."""

    def __init__(self, output: Output, schema: Any, slice_no: int, folder: str = "") -> None:
        self.output = output
        self.schema = schema
        self.slice_no = slice_no
        self.folder = folder
        self.part = 0
        self._writer: Any = None
        self._stream: Any = None
        self._records = 0
        self._start = utcnow()
        self._last_group = 0

    def write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        limit = self.output.cmd.maxfilesize
        if self._stream is not None and self._stream.size + self._last_group > limit:
            self._roll()
        if self._writer is None:
            self._stream = self.output.open(self.slice_no, self.part, self.folder)
            self._writer = pq.ParquetWriter(_Sink(self._stream), self.schema, compression="snappy")
            self._records, self._start = 0, utcnow()
        before = self._stream.size
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._last_group = self._stream.size - before
        self._records += table.num_rows
        _release_memory()

    def close(self) -> None:
        if self._writer is not None:
            self._roll()

    def _roll(self) -> None:
        self._writer.close()
        stream, self._writer, self._stream = self._stream, None, None
        size = stream.close()
        url = self.output.target.url(stream.key)
        self.output.finished(
            FileResult(stream.key, url, size, self._records, self.slice_no, self._start, utcnow())
        )
        self.part += 1


def _release_memory() -> None:
    # Arrow's allocator keeps freed memory per thread; worker threads rotate, so hand it back.
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


class _Sink(io.RawIOBase):
    """A write-only file for pyarrow that feeds the S3 stream."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._stream.write(chunk)
        return len(chunk)


def split(table: Any, values: list[Any], names: tuple[str, ...]) -> list[tuple[str, Any]]:
    """(partition folder, rows of `table` in it) for each partition value tuple in the batch."""
    if not names:
        return [("", table)]

    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, key in enumerate(zip(*(column.to_pylist() for column in values), strict=True)):
        groups.setdefault(key, []).append(index)
    return [
        (hive_folder(names, tuple(None if v is None else str(v).encode() for v in key)), table.take(rows))
        for key, rows in groups.items()
    ]
