"""What each COPY format becomes on its way to PostgreSQL's `COPY ... FROM STDIN`, fed as it streams:
pipe-delimited text with Redshift's empty fields, and JSON ('auto') and Parquet rows as CSV.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from unload_assets_local.emulator.copy.sources import CHUNK
from unload_assets_local.emulator.copy.statement import copy_error

_SPACES = re.compile(r"\s*")


class EmptyAsNull:
    """Text-format rows with every empty field of a non-text column replaced by the NULL string, as
    Redshift loads them ("empty fields for other data types, such as INT, are always loaded with NULL";
    PostgreSQL's text COPY refuses them). With ESCAPE a backslash escapes the next byte (a delimiter or
    a newline inside a field). A row cut by a chunk boundary waits for the rest."""

    def __init__(self, non_text: list[bool], delimiter: bytes, null: bytes, *, escape: bool) -> None:
        self.non_text, self.delimiter, self.null, self.escape = non_text, delimiter, null, escape
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        data, out, row, i = self.pending + data, bytearray(), 0, 0
        if not self.escape:
            row = data.rfind(b"\n") + 1
            out += b"".join(self._row(r) + b"\n" for r in data[:row].split(b"\n")[:-1])
        else:
            while i < len(data):
                if data[i] == 0x5C:  # backslash: the next byte is the field's, whatever it is
                    i += 2
                    continue
                if data[i] == 0x0A:
                    out += self._row(data[row:i]) + b"\n"
                    row = i + 1
                i += 1
        self.pending = data[row:]
        return bytes(out)

    def finish(self) -> bytes:
        rest, self.pending = self.pending, b""
        return self._row(rest) if rest else b""

    def _row(self, row: bytes) -> bytes:
        d = self.delimiter
        if row and d + d not in row and not row.startswith(d) and not row.endswith(d):
            return row  # no empty field
        fields = self._fields(row) if self.escape and b"\\" in row else row.split(d)
        return d.join(
            self.null if not f and k < len(self.non_text) and self.non_text[k] else f
            for k, f in enumerate(fields)
        )

    def _fields(self, row: bytes) -> list[bytes]:
        fields, start, i = [], 0, 0
        while i < len(row):
            if row[i] == 0x5C:
                i += 2
                continue
            if row[i : i + 1] == self.delimiter:
                fields.append(row[start:i])
                start = i + 1
            i += 1
        return [*fields, row[start:]]


def rows_as_csv(rows: Iterator[list[Any]]) -> Iterator[bytes]:
    """Rows as PostgreSQL CSV, a chunk at a time: NULL as an empty unquoted field, every value quoted
    (so an empty string stays one)."""
    out: list[str] = []
    size = 0
    for row in rows:
        line = ",".join(_csv_field(v) for v in row) + "\n"
        out.append(line)
        size += len(line)
        if size > CHUNK:
            yield "".join(out).encode()
            out, size = [], 0
    if out:
        yield "".join(out).encode()


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict | list):
        text = json.dumps(value)
    else:
        text = str(value)
    return '"' + text.replace('"', '""') + '"'


class JsonRecords:
    """JSON 'auto', fed text as it streams: each object's keys matched to the columns without case
    (absent keys load NULL); an object cut by a chunk boundary waits for the rest."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = [c.lower() for c in columns]
        self.buffer = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> Iterator[list[Any]]:
        text = self.buffer + self._utf8.decode(data)
        pos, end = 0, len(text)
        while (pos := _SPACES.match(text, pos).end()) < end:  # type: ignore[union-attr]
            try:
                obj, pos_after = self._decoder.raw_decode(text, pos)
            except ValueError:
                break
            if not isinstance(obj, dict):
                raise copy_error("JSON 'auto' expects an object per record")
            lowered = {str(k).lower(): v for k, v in obj.items()}
            yield [lowered.get(c) for c in self.columns]
            pos = pos_after
        self.buffer = text[pos:]

    def finish(self) -> None:
        if self.buffer.strip():
            raise copy_error("Invalid JSON: a record is malformed or cut short at the end of a file")
        self.buffer = ""


def parquet_rows(file: BinaryIO, columns: list[str]) -> Iterator[list[Any]]:
    """A Parquet file's rows, a row group at a time, its columns matched to the table's without case."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(file)
    names = {name.lower(): name for name in reader.schema_arrow.names}
    wanted = [names.get(c.lower()) for c in columns]
    for group in range(reader.num_row_groups):
        table = reader.read_row_group(group)
        values = [table.column(n).to_pylist() if n else [None] * table.num_rows for n in wanted]
        yield from (list(row) for row in zip(*values, strict=True))
