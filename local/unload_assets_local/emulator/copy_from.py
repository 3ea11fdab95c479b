"""COPY from S3, as Redshift loads what UNLOAD wrote: `COPY table [(columns)] FROM 's3://...'`.

The files (every object under the prefix, or the entries of a `MANIFEST`) are read from S3 a chunk at a
time, decompressed as they stream (GZIP, BZIP2, ZSTD; concatenated members too), and fed to
PostgreSQL's own `COPY ... FROM STDIN` on the client's session: CSV and pipe-delimited text as they
are, JSON ('auto') and Parquet converted row by row to CSV. Memory stays flat whatever the size.
A row PostgreSQL refuses fails the load with Redshift's message and a row in `stl_load_errors`.
"""

from __future__ import annotations

import asyncio
import bz2
import codecs
import json
import re
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from unload_assets.statement.sqltext import SqlTextError, Token, tokenize
from unload_assets_local.emulator import wire
from unload_assets_local.emulator.backend import BackendError, BackendSession
from unload_assets_local.emulator.command import UnloadError
from unload_assets_local.emulator.rules import auth_kind
from unload_assets_local.emulator.session import Session, refuse

_CHUNK = 1024 * 1024
_FORMATS = {"CSV": "csv", "JSON": "json", "PARQUET": "parquet"}
_COMPRESSIONS = {"GZIP": "gzip", "BZIP2": "bzip2", "ZSTD": "zstd"}
_IGNORED = frozenset({"REGION", "TIMEFORMAT", "DATEFORMAT", "ACCEPTINVCHARS", "TRUNCATECOLUMNS"})
_SPACES = re.compile(r"\s*")
_LINE_OF = re.compile(r"line (\d+)")
_COLUMN_OF = re.compile(r"column (\w+)")


def _error(message: str) -> UnloadError:
    return UnloadError(f"COPY: {message}")


@dataclass(frozen=True)
class CopyCommand:
    table: str  # as written (maybe schema-qualified, maybe quoted): handed to PostgreSQL as is
    columns: tuple[str, ...]
    source: str  # 's3://bucket/prefix-or-manifest'
    manifest: bool = False
    format: str = "text"
    json_auto: bool = False
    delimiter: str | None = None
    null_as: str | None = None
    quote: str = '"'
    ignoreheader: int = 0
    compression: str | None = None
    escape: bool = False
    auth: dict[str, str] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return self.source[len("s3://") :].split("/", 1)[0]

    @property
    def key(self) -> str:
        rest = self.source[len("s3://") :]
        return rest.split("/", 1)[1] if "/" in rest else ""


def is_copy_from_s3(sql: str) -> bool:
    """`COPY <table> [(...)] FROM 's3://...'`: a COPY whose source is S3 (not STDIN, not a server file)."""
    try:
        tokens = tokenize(sql)
        first = next(tokens, None)
        if first is None or first.kind != "word" or first.value.upper() != "COPY":
            return False
        for tok in tokens:
            if tok.kind == "word" and tok.value.upper() == "FROM":
                source = next(tokens, None)
                return source is not None and source.kind == "string" and source.value.startswith("s3://")
    except SqlTextError:
        return False
    return False


def parse_copy(sql: str) -> CopyCommand:
    try:
        tokens = list(tokenize(sql))
    except SqlTextError as exc:
        raise _error(f"{exc} at position {exc.pos + 1}") from None
    return _Parser(sql, tokens).parse()


class _Parser:
    def __init__(self, sql: str, tokens: list[Token]) -> None:
        self.sql, self.tokens, self.i = sql, tokens, 1  # past COPY
        self.fields: dict[str, Any] = {}
        self.auth: dict[str, str] = {}

    def parse(self) -> CopyCommand:
        start = self.tokens[self.i].pos if self.i < len(self.tokens) else len(self.sql)
        while self.i < len(self.tokens) and not self._is("FROM") and not self._punct("("):
            self.i += 1
        if self.i >= len(self.tokens):
            raise _error("expected FROM 's3://...'")
        table = self.sql[start : self.tokens[self.i].pos].strip()
        columns: list[str] = []
        if self._punct("("):
            self.i += 1
            while not self._punct(")"):
                tok = self._take("a column name")
                if tok.kind in ("word", "ident"):
                    columns.append(tok.value.lower() if tok.kind == "word" else tok.value)
                elif not (tok.kind == "punct" and tok.value == ","):
                    raise _error(f"unexpected {tok.value!r} in the column list")
            self.i += 1
        if not self._is("FROM"):
            raise _error("expected FROM 's3://...' after the table")
        self.i += 1
        source = self._take("the S3 location").value
        while self.i < len(self.tokens):
            tok = self._take("an option")
            if tok.kind == "punct" and tok.value == ";":
                break
            self._option(tok)
        if not table:
            raise _error("no table to load into")
        if not self.auth:
            raise _error("no authorization: add IAM_ROLE default, IAM_ROLE '<role-arn>' or keys")
        try:
            auth_kind(self.auth)  # the same rules as UNLOAD's: one form, complete
        except UnloadError as exc:
            raise _error(str(exc).removeprefix("UNLOAD: ")) from None
        return CopyCommand(table=table, columns=tuple(columns), source=source, auth=self.auth, **self.fields)

    def _option(self, tok: Token) -> None:
        key = tok.value.upper() if tok.kind == "word" else ""
        if key == "FORMAT":
            self._word_if("AS")
            key = self._take("CSV, JSON or PARQUET").value.upper()
        if key in _FORMATS:
            self.fields["format"] = _FORMATS[key]
            if key == "CSV" and self._word_if("QUOTE"):
                self._word_if("AS")
                self.fields["quote"] = self._string("QUOTE")
            if key == "JSON":
                spec = self._string("JSON")
                if not spec.lower().startswith("auto"):  # auto, or auto ignorecase
                    raise _error("this emulator loads JSON 'auto' only (a JSONPaths file is not supported)")
                self.fields["json_auto"] = True
        elif key in _COMPRESSIONS:
            self.fields["compression"] = _COMPRESSIONS[key]
        elif key == "MANIFEST":
            self.fields["manifest"] = True
        elif key == "ESCAPE":
            self.fields["escape"] = True
        elif key in ("DELIMITER", "NULL"):
            self._word_if("AS")
            self.fields["delimiter" if key == "DELIMITER" else "null_as"] = self._string(key)
        elif key == "QUOTE":
            self._word_if("AS")
            self.fields["quote"] = self._string("QUOTE")
        elif key == "IGNOREHEADER":
            self._word_if("AS")
            number = self._take("a number of lines")
            if number.kind != "number" or not number.value.isdigit():
                raise _error("IGNOREHEADER must be followed by a whole number of lines")
            self.fields["ignoreheader"] = int(number.value)
        elif key in _IGNORED:
            self._word_if("AS")
            if self.i < len(self.tokens) and self.tokens[self.i].kind in ("string", "word"):
                self.i += 1
        elif key == "IAM_ROLE":
            value = self._take("default or a role ARN")
            self.auth["IAM_ROLE"] = "default" if value.kind == "word" else value.value
        elif key in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "CREDENTIALS"):
            self._word_if("AS")
            self.auth[key] = self._string(key)
        else:
            raise _error(f"syntax error at or near position {tok.pos + 1}: not a COPY option here")

    def _is(self, word: str) -> bool:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        return tok is not None and tok.kind == "word" and tok.value.upper() == word

    def _punct(self, char: str) -> bool:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        return tok is not None and tok.kind == "punct" and tok.value == char

    def _word_if(self, word: str) -> bool:
        """Step over `word` if it comes next (optional keywords such as AS)."""
        if self._is(word):
            self.i += 1
            return True
        return False

    def _take(self, what: str) -> Token:
        if self.i >= len(self.tokens):
            raise _error(f"expected {what}, found the end of the statement")
        self.i += 1
        return self.tokens[self.i - 1]

    def _string(self, option: str) -> str:
        tok = self._take(f"a quoted value after {option}")
        if tok.kind != "string":
            raise _error(f"{option} must be followed by a quoted string")
        return tok.value


# ---- reading the files -----------------------------------------------------------------------------


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
            raise _error("Manifest file is not in correct json format") from None
        return files

    def listing() -> list[SourceFile]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=cmd.bucket, Prefix=cmd.key)
        return [
            SourceFile(o["Key"]) for p in pages for o in p.get("Contents", []) if not o["Key"].endswith("/")
        ]

    files = await asyncio.to_thread(listing)
    if not files:
        raise _error(f"The specified S3 prefix '{cmd.key}' does not exist")
    return files


def _key_in(bucket: str, url: str) -> str:
    prefix = f"s3://{bucket}/"
    if not url.startswith(prefix):
        raise _error("a manifest entry names another bucket than the manifest's")
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
            raise _error(
                f"S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey "
                f"(mandatory file s3://{bucket}/{source.key})"
            ) from None
        return
    decompress = _decompressor(compression)
    try:
        while chunk := await asyncio.to_thread(body.read, _CHUNK):
            if data := decompress(chunk):
                yield data
    finally:
        body.close()


async def _skip_lines(chunks: AsyncIterator[bytes], lines: int) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        while lines and chunk:
            newline = chunk.find(b"\n")
            if newline < 0:
                chunk = b""
                break
            chunk, lines = chunk[newline + 1 :], lines - 1
        if chunk:
            yield chunk


# ---- PostgreSQL's side -----------------------------------------------------------------------------


def postgres_copy(cmd: CopyCommand, columns: list[str]) -> str:
    """The `COPY ... FROM STDIN` PostgreSQL runs: CSV for csv, JSON and Parquet; text for text."""
    target = cmd.table + (f" ({', '.join(_ident(c) for c in columns)})" if columns else "")
    if cmd.format == "text":
        delimiter, null = text_delimiter(cmd), text_null(cmd)
        return f"COPY {target} FROM STDIN WITH (FORMAT text, DELIMITER {_lit(delimiter)}, NULL {_lit(null)})"
    if cmd.format == "csv":
        delimiter, null = cmd.delimiter or ",", cmd.null_as or ""
        return (
            f"COPY {target} FROM STDIN WITH (FORMAT csv, DELIMITER {_lit(delimiter)}, NULL {_lit(null)}, "
            f"QUOTE {_lit(cmd.quote)})"
        )
    return f"COPY {target} FROM STDIN WITH (FORMAT csv)"


def text_delimiter(cmd: CopyCommand) -> str:
    return cmd.delimiter or "|"


def text_null(cmd: CopyCommand) -> str:
    """The NULL string PostgreSQL is given for text: without ESCAPE, Redshift reads backslashes as they
    are; PostgreSQL's text format would not, so they are doubled on the way (and the NULL string too)."""
    null = cmd.null_as if cmd.null_as is not None else "\\N"
    return null if cmd.escape else null.replace("\\", "\\\\")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def table_columns(backend: BackendSession, table: str) -> dict[str, bool]:
    """The table's columns in order, each with whether it holds text (char, varchar, text)."""
    rows = await backend.query(
        "SELECT a.attname, t.typcategory = 'S' FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = " + _lit(table) + "::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum"
    )
    return {bytes(r[0] or b"").decode(): bytes(r[1] or b"") == b"t" for r in rows}


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
        if size > _CHUNK:
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
                raise _error("JSON 'auto' expects an object per record")
            lowered = {str(k).lower(): v for k, v in obj.items()}
            yield [lowered.get(c) for c in self.columns]
            pos = pos_after
        self.buffer = text[pos:]

    def finish(self) -> None:
        if self.buffer.strip():
            raise _error("Invalid JSON: a record is malformed or cut short at the end of a file")
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


# ---- the load -------------------------------------------------------------------------------------


async def load(s3: Any, backend: BackendSession, session: Session, catalog: Any, sql: str) -> bytes:
    """Run one COPY from S3 on the client's session; the messages for the client, ending with
    ReadyForQuery."""
    if backend.status == b"E":
        return await refuse(backend, {"C": "25P02", "M": "current transaction is aborted"})
    try:
        cmd = parse_copy(sql)
        files = await source_files(s3, cmd)
        kinds = await table_columns(backend, cmd.table)
        columns = list(cmd.columns) or list(kinds)
        non_text = [not kinds.get(c.strip('"'), kinds.get(c.strip('"').lower(), True)) for c in columns]
        answer = await backend.copy_in(postgres_copy(cmd, columns), _feed(s3, cmd, files, columns, non_text))
    except UnloadError as exc:
        return await refuse(backend, {"M": str(exc)})
    except BackendError as exc:
        return await refuse(backend, {k: v for k, v in exc.fields.items() if k not in ("P", "q", "p")})
    failure = wire.first_error(answer)
    if failure is not None:
        await asyncio.to_thread(catalog.load_error, session.database, _load_error_row(cmd, failure, session))
        table = cmd.table.split(".")[-1].strip('"')
        return await refuse(
            backend,
            {"C": "XX000", "M": f"Load into table '{table}' failed. Check 'stl_load_errors' system table for "
             "details.", "D": failure.get("M", "")},
        )  # fmt: skip
    rows = _copied(answer)
    table = cmd.table.split(".")[-1].strip('"')
    return (
        wire.notice_response(f"Load into table '{table}' completed, {rows} record(s) loaded successfully.")
        + wire.command_complete("COPY")
        + wire.ready_for_query(backend.status)
    )


async def _feed(
    s3: Any, cmd: CopyCommand, files: list[SourceFile], columns: list[str], non_text: list[bool]
) -> AsyncIterator[bytes]:
    for source in files:
        chunks = file_bytes(s3, cmd.bucket, source, cmd.compression)
        if cmd.format == "text" and any(non_text):
            empty = EmptyAsNull(
                non_text, text_delimiter(cmd).encode(), text_null(cmd).encode(), escape=cmd.escape
            )
            async for chunk in _skip_lines(chunks, cmd.ignoreheader):
                yield empty.feed(chunk if cmd.escape else chunk.replace(b"\\", b"\\\\"))
            if rest := empty.finish():
                yield rest + b"\n"
        elif cmd.format in ("csv", "text"):
            last = b"\n"
            async for chunk in _skip_lines(chunks, cmd.ignoreheader):
                yield chunk if cmd.format == "csv" or cmd.escape else chunk.replace(b"\\", b"\\\\")
                last = chunk[-1:]
            if last != b"\n":
                yield b"\n"  # the next file's first row starts a line of its own
        elif cmd.format == "json":
            records = JsonRecords(columns)
            async for chunk in chunks:
                for part in rows_as_csv(records.feed(chunk)):
                    yield part
            records.finish()
        else:  # Parquet needs its footer first: spooled to a temporary file, not held in memory
            with tempfile.TemporaryFile() as spool:
                async for chunk in chunks:
                    spool.write(chunk)
                for part in rows_as_csv(parquet_rows(spool, columns)):
                    yield part


def _copied(messages: bytes) -> int:
    """The row count of PostgreSQL's `COPY n` tag."""
    for kind, payload in wire.split_messages(messages):
        if kind == ord("C") and payload.startswith(b"COPY"):
            return int(payload[:-1].split()[-1])
    return 0


def _load_error_row(cmd: CopyCommand, failure: dict[str, str], session: Session) -> dict[str, Any]:
    where = failure.get("W", "")
    line, column = _LINE_OF.search(where), _COLUMN_OF.search(where)
    return {
        "session": session.pid, "filename": cmd.source, "tbl": cmd.table, "err_code": 1200,
        "line_number": int(line.group(1)) if line else 0, "colname": column.group(1) if column else "",
        "err_reason": failure.get("M", "")[:100], "raw_field_value": where[:1024],
    }  # fmt: skip
