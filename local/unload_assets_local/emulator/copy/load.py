"""COPY from S3, as Redshift loads what UNLOAD wrote: `COPY table [(columns)] FROM 's3://...'`.

The files (every object under the prefix, or the entries of a `MANIFEST`) are read from S3 a chunk at a
time, decompressed as they stream (GZIP, BZIP2, ZSTD; concatenated members too), and fed to
PostgreSQL's own `COPY ... FROM STDIN` on the client's session: CSV and pipe-delimited text as they
are, JSON ('auto') and Parquet converted row by row to CSV. Memory stays flat whatever the size.
A row PostgreSQL refuses fails the load with Redshift's message and a row in `stl_load_errors`.

The statement is parsed in `statement.py`, the files read in `sources.py` and converted in
`formats.py`; here, PostgreSQL's side and the load itself.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from unload_assets_local.emulator.copy.formats import EmptyAsNull, JsonRecords, parquet_rows, rows_as_csv
from unload_assets_local.emulator.copy.sources import SourceFile, file_bytes, skip_lines, source_files
from unload_assets_local.emulator.copy.statement import CopyCommand, parse_copy
from unload_assets_local.emulator.protocol import wire
from unload_assets_local.emulator.protocol.backend import BackendError, BackendSession
from unload_assets_local.emulator.protocol.session import Session, refuse
from unload_assets_local.emulator.unload.command import UnloadError

_LINE_OF = re.compile(r"line (\d+)")
_COLUMN_OF = re.compile(r"column (\w+)")


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
            {
                "C": "XX000",
                "M": f"Load into table '{table}' failed. Check 'stl_load_errors' system table for details.",
                "D": failure.get("M", ""),
            },
        )
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
            async for chunk in skip_lines(chunks, cmd.ignoreheader):
                yield empty.feed(chunk if cmd.escape else chunk.replace(b"\\", b"\\\\"))
            if rest := empty.finish():
                yield rest + b"\n"
        elif cmd.format in ("csv", "text"):
            last = b"\n"
            async for chunk in skip_lines(chunks, cmd.ignoreheader):
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
        "session": session.pid,
        "filename": cmd.source,
        "tbl": cmd.table,
        "err_code": 1200,
        "line_number": int(line.group(1)) if line else 0,
        "colname": column.group(1) if column else "",
        "err_reason": failure.get("M", "")[:100],
        "raw_field_value": where[:1024],
    }
