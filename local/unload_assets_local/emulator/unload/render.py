"""The COPY statement that makes PostgreSQL render each output line itself.

For text, CSV and JSON the whole line (delimiters, quoting, escapes, NULL strings, newline) is built in
SQL, one text value per row, and copied out in binary so it arrives byte for byte: the proxy then only
cuts rows apart, which keeps Python's per-row work to a slice. Parquet rows come out as PostgreSQL CSV
for pyarrow's CSV reader. Partition values ride along as extra columns.

The statements run with standard_conforming_strings off (Redshift's literal rules), so every literal
written here is an E'' string, which means the same under either setting.
"""

from __future__ import annotations

import json

from unload_assets_local.emulator.sql.statements import literal
from unload_assets_local.emulator.unload.columns import ColumnInfo
from unload_assets_local.emulator.unload.command import UnloadCommand, UnloadError

# Characters that can occur in the text form of these kinds: a delimiter outside the set cannot.
_SAFE_CHARS = {
    "int": set("0123456789-"),
    "float": set("0123456789.-+eEinfatyINFATY"),
    "numeric": set("0123456789.-NaInfity"),
    "bool": {"t", "f"},
}


def aliases(count: int) -> list[str]:
    return [f"_c{i}" for i in range(1, count + 1)]


def text_of(column: ColumnInfo, ref: str) -> str:
    """`ref` rendered as PostgreSQL's COPY would (NULL stays NULL): t/f for booleans, CHAR padded."""
    if column.kind == "bool":
        return f"(CASE {ref} WHEN true THEN 't' WHEN false THEN 'f' END)"
    if column.kind == "bpchar":
        return f"textin(bpcharout({ref}))"
    return f"({ref})::text"


def copy_statement(
    cmd: UnloadCommand, select: str, columns: list[ColumnInfo], parts: list[int]
) -> tuple[str, bool]:
    """(COPY statement, whether it is binary). Binary: column 1 is the line, then the partition values
    (`parts`) as text. Otherwise one CSV row per line: PostgreSQL's own CSV, or the Parquet input."""
    refs = aliases(len(columns))
    body = [i for i in range(len(columns)) if i not in parts or cmd.partition_include]
    source = f"FROM ({select}\n) AS _u({', '.join(refs)})"
    if cmd.format == "parquet":
        return (
            f"COPY (SELECT {_parquet_exprs(columns, refs, body, parts)} {source}) TO STDOUT (FORMAT csv)",
            False,
        )
    if cmd.format == "csv" and not parts:
        # PostgreSQL's CSV quoting is the one Redshift documents (plus "" for an empty string, so
        # that it differs from NULL): let COPY do it at C speed.
        delimiter, null = literal(cmd.delimiter or ","), literal(cmd.null_as or "")
        options = f"FORMAT csv, DELIMITER {delimiter}, NULL {null}"
        return (
            f"COPY (SELECT {', '.join(_csv_native(columns, refs, body))} {source}) TO STDOUT ({options})",
            False,
        )
    if cmd.format == "json":
        line = _json_line(columns, refs, body)
    elif cmd.fixedwidth is not None:
        line = _fixed_line(cmd, columns, refs, body)
    else:
        line = _delimited_line(cmd, columns, refs, body)
    extra = "".join(f", {text_of(columns[i], refs[i])}" for i in parts)
    return f"COPY (SELECT {line}{extra} {source}) TO STDOUT (FORMAT binary)", True


def header_line(cmd: UnloadCommand, names: list[str]) -> bytes:
    """The HEADER line: the column names under the same quoting and escaping as the data."""
    delimiter = cmd.delimiter or ("," if cmd.format == "csv" else "|")
    fields = []
    for name in names:
        if cmd.format == "csv":
            if any(ch in name for ch in ('"', delimiter, "\n", "\r")):
                name = '"' + name.replace('"', '""') + '"'
        else:
            if cmd.escape:
                for ch in _escaped_chars(cmd, delimiter):
                    name = name.replace(ch, "\\" + ch)
            if cmd.addquotes:
                name = f'"{name}"'
        fields.append(name)
    return (delimiter.join(fields) + "\n").encode()


def _escaped_chars(cmd: UnloadCommand, delimiter: str) -> list[str]:
    chars = ["\\", "\n", "\r", delimiter] + (['"', "'"] if cmd.addquotes else [])
    return list(dict.fromkeys(chars))  # backslash first, no repeats


def _delimited_line(cmd: UnloadCommand, columns: list[ColumnInfo], refs: list[str], body: list[int]) -> str:
    csv = cmd.format == "csv"
    delimiter = cmd.delimiter or ("," if csv else "|")
    null = literal(cmd.null_as or "")
    fields = []
    for i in body:
        col, value = columns[i], text_of(columns[i], refs[i])
        if csv:
            fields.append(_csv_field(col, value, delimiter, null))
            continue
        if cmd.escape and col.is_character:
            for ch in _escaped_chars(cmd, delimiter):
                value = f"replace({value}, {literal(ch)}, {literal(chr(92) + ch)})"
        value = f"coalesce({value}, {null})"
        fields.append(f"'\"' || {value} || '\"'" if cmd.addquotes else value)
    return _concat(fields, literal(delimiter))


def _csv_field(col: ColumnInfo, value: str, delimiter: str, null: str) -> str:
    """PostgreSQL's CSV rule in SQL: quote a value holding a quote, the delimiter, CR or LF, or equal to
    the NULL string (so '' differs from NULL)."""
    if col.kind in _SAFE_CHARS and delimiter not in _SAFE_CHARS[col.kind]:
        return f"coalesce({value}, {null})"
    chars = dict.fromkeys(['"', delimiter, "\n", "\r"])
    special = " OR ".join([f"{value} = {null}"] + [f"strpos({value}, {literal(ch)}) > 0" for ch in chars])
    quoted = f"'\"' || replace({value}, '\"', '\"\"') || '\"'"
    return f"CASE WHEN {value} IS NULL THEN {null} WHEN {special} THEN {quoted} ELSE {value} END"


def _csv_native(columns: list[ColumnInfo], refs: list[str], body: list[int]) -> list[str]:
    """Columns for PostgreSQL's CSV output, which already writes t/f and keeps CHAR padding."""
    return [refs[i] for i in body]


def _fixed_line(cmd: UnloadCommand, columns: list[ColumnInfo], refs: list[str], body: list[int]) -> str:
    widths = [int(spec.rsplit(":", 1)[1]) for spec in (cmd.fixedwidth or "").split(",")]
    if len(widths) != len(body):
        raise UnloadError(
            f"UNLOAD: FIXEDWIDTH lists {len(widths)} column(s) but the query returns {len(body)}"
        )
    null = literal(cmd.null_as or "")
    fields = []
    for i, width in zip(body, widths, strict=True):
        value = f"coalesce({text_of(columns[i], refs[i])}, {null})"
        fields.append(f"rpad({value}, greatest({width}, length({value})))")
    return _concat(fields, None)


def _json_line(columns: list[ColumnInfo], refs: list[str], body: list[int]) -> str:
    names = [columns[i].name for i in body]
    if len(set(names)) != len(names):
        raise UnloadError("UNLOAD: FORMAT JSON needs unique column names; alias the duplicated columns")
    pieces = []
    for n, i in enumerate(body):
        col, ref = columns[i], refs[i]
        if col.kind == "int":
            value = f"({ref})::text"
        elif col.kind in ("float", "numeric"):
            value = f"to_json({ref})::text"  # NaN and Infinity become strings
        elif col.kind == "bool":  # Redshift writes booleans as t and f
            value = f"(CASE {ref} WHEN true THEN '\"t\"' WHEN false THEN '\"f\"' END)"
        elif col.kind == "json":
            value = f"({ref})::jsonb::text"  # nested JSON, as Redshift writes SUPER; jsonb is one line
        else:
            value = f"to_json({text_of(col, ref)})::text"
        key = ("{" if n == 0 else ",") + json.dumps(col.name, ensure_ascii=False) + ":"
        pieces.append(f"{literal(key)} || coalesce({value}, 'null')")
    return _concat(pieces or [literal("{")], None, end="}\n")


def _parquet_exprs(columns: list[ColumnInfo], refs: list[str], body: list[int], parts: list[int]) -> str:
    exprs = []
    for i in body:
        if columns[i].type_oid == 1184:
            exprs.append(f"({refs[i]}) AT TIME ZONE 'UTC'")
        elif columns[i].kind in ("json", "bpchar"):
            exprs.append(text_of(columns[i], refs[i]))
        else:
            exprs.append(refs[i])
    exprs += [text_of(columns[i], refs[i]) for i in parts]
    return ", ".join(exprs)


def _concat(fields: list[str], delimiter: str | None, end: str = "\n") -> str:
    joiner = f" || {delimiter} || " if delimiter else " || "
    return f"({joiner.join(f'({f})' for f in fields)} || {literal(end)})"
