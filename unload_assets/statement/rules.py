"""The rules an UNLOAD's SELECT and options must follow, and the binding of a day into the SELECT.

Pure functions, no I/O, and no knowledge of the catalogue: `catalogue/` validates with these rules, and
`build.py` applies them when it writes a statement.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, timedelta
from typing import NamedTuple, Protocol

from unload_assets.statement.sqltext import SqlTextError, Token, has_outer_limit, quote_literal, tokenize

PLACEHOLDERS = ("partition_date", "partition_start", "partition_end")
MAX_STATEMENT_BYTES = 16 * 1024 * 1024  # Redshift's limit for one statement

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_ALLOWED_PLACEHOLDERS = ", ".join("{{ " + name + " }}" for name in PLACEHOLDERS)


class _Scan(NamedTuple):
    tokens: tuple[Token, ...]
    placeholders: tuple[re.Match[str], ...]  # `{{ name }}` found in SQL code
    problems: tuple[str, ...]


@functools.lru_cache(maxsize=32)  # validation asks about the same SQL several times in a row
def _scan(sql: str) -> _Scan:
    # The emulator's lexer, so that literals, quoted identifiers, dollar quotes and comments (where a
    # placeholder is just text) are recognised exactly as Redshift reads them.
    tokens: list[Token] = []
    problems: list[str] = []
    try:
        tokens.extend(tokenize(sql))
    except SqlTextError as exc:
        problems.append(f"{exc} starting on line {sql.count(chr(10), 0, exc.pos) + 1} of the SQL")
    placeholders: list[re.Match[str]] = []
    for tok in tokens:
        inside_last = placeholders and tok.pos < placeholders[-1].end()
        if tok.kind != "punct" or tok.value not in "{}" or inside_last:
            continue
        match = _PLACEHOLDER.match(sql, tok.pos)
        if match is None:
            problems.append("stray brace; write placeholders as {{ partition_date }}")
            break
        placeholders.append(match)
    return _Scan(tuple(tokens), tuple(placeholders), tuple(problems))


def placeholder_spans(sql: str) -> list[tuple[int, int, str]]:
    """Where each `{{ name }}` placeholder stands in SQL code: (start, end, name)."""
    return [(match.start(), match.end(), match.group(1)) for match in _scan(sql).placeholders]


def placeholder_names(sql: str) -> set[str]:
    """Names of the `{{ name }}` placeholders in SQL code (not in literals or comments)."""
    return {match.group(1) for match in _scan(sql).placeholders}


def sql_problems(sql: str) -> list[str]:
    """What makes `sql` unusable as the SELECT of an UNLOAD, found without parsing it."""
    if too_long(sql):  # first, and alone: scanning megabytes of text only to refuse it is slow
        return ["is too long: the UNLOAD statement would exceed Redshift's 16 MB limit"]
    if "\0" in sql:  # psycopg2 refuses it at run time, where the op would retry a hopeless statement
        return ["contains a NUL character (\\0), which no Redshift statement can hold"]
    tokens, placeholders, found = _scan(sql)
    problems = list(found)
    unknown = sorted({match.group(1) for match in placeholders} - set(PLACEHOLDERS))
    if unknown:
        problems.append(f"unknown placeholder {{{{ {unknown[0]} }}}}; allowed: {_ALLOWED_PLACEHOLDERS}")
    if any(tok.kind == "punct" and tok.value == ";" for tok in tokens):
        problems.append("contains ';': UNLOAD takes one SELECT, without a trailing semicolon")
    first = tokens[0].value.lower() if tokens else ""
    if first not in ("select", "with", "("):
        problems.append("must be a SELECT (or WITH ... SELECT) query")
    if has_outer_limit(sql):
        problems.append("has an outer LIMIT, which UNLOAD refuses; nest it: select * from (... limit n)")
    return problems


def too_long(select: str) -> bool:
    # Quoting can double the text; the rest of the statement and the bound dates fit in the margin.
    return len(quote_literal(select).encode()) + 64 * 1024 > MAX_STATEMENT_BYTES


def bind_placeholders(sql: str, partition_date: date) -> str:
    """`sql` with each placeholder in code replaced by a SQL literal built from the date itself."""
    if isinstance(partition_date, datetime):  # a datetime is a date; its time part would leak into literals
        raise TypeError("partition_date must be a datetime.date, not a datetime")
    day, next_day = partition_date.isoformat(), (partition_date + timedelta(days=1)).isoformat()
    values = {
        "partition_date": "DATE " + quote_literal(day),
        "partition_start": "TIMESTAMP " + quote_literal(day + " 00:00:00"),
        "partition_end": "TIMESTAMP " + quote_literal(next_day + " 00:00:00"),
    }
    pieces, pos = [], 0
    for match in _scan(sql).placeholders:
        if match.group(1) not in values:
            raise ValueError(f"unknown placeholder {match.group(0)}; allowed: {_ALLOWED_PLACEHOLDERS}")
        pieces += [sql[pos : match.start()], values[match.group(1)]]
        pos = match.end()
    return "".join(pieces) + sql[pos:]


class UnloadOptions(Protocol):
    """The option fields of a target, as the rules read them."""

    @property
    def format(self) -> str: ...
    @property
    def delimiter(self) -> str | None: ...
    @property
    def null_as(self) -> str | None: ...


_OPTION_WORDS = {
    "header": "HEADER",
    "delimiter": "DELIMITER",
    "null_as": "NULL AS",
    "addquotes": "ADDQUOTES",
    "compression": "GZIP/BZIP2/ZSTD",
}
_REFUSED_WITH = {
    "parquet": tuple(_OPTION_WORDS),
    "json": ("header", "delimiter", "null_as", "addquotes"),
    "csv": ("addquotes",),  # CSV quotes fields itself
}


def option_conflicts(target: UnloadOptions) -> list[tuple[str, str]]:
    """`(field, problem)` for each option combination Redshift refuses."""
    problems = []
    for name in _REFUSED_WITH.get(target.format, ()):
        if getattr(target, name) not in (None, False, "none"):
            why = " (Parquet files are compressed internally)" if name == "compression" else ""
            refused = f"FORMAT {target.format.upper()} can't be combined with {_OPTION_WORDS[name]}{why}"
            problems.append((name, refused))
    if target.delimiter is not None and target.delimiter in "\n\r\0":
        problems.append(("delimiter", "a line break or NUL can't be the delimiter"))
    elif target.delimiter is not None and not target.delimiter.isascii():
        problems.append(("delimiter", f"{target.delimiter!r}: Redshift takes one ASCII character"))
    if target.null_as is not None and "\0" in target.null_as:
        problems.append(("null_as", "a NUL character can't be part of a Redshift statement"))
    if target.format == "csv" and target.delimiter == '"':
        problems.append(("delimiter", "'\"' is the CSV quote character"))
    return problems
