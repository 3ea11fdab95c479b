"""A target's SELECT read with Redshift's grammar (sqlglot): its syntax checked, and the Redshift tables
it reads, for the asset lineage graph. No database connection is needed."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from unload_assets.statement.rules import PLACEHOLDERS, placeholder_spans

DEFAULT_SCHEMA = "public"  # what an unqualified name resolves to under Redshift's default search_path
# Any date will do: the placeholders only need to become literals sqlglot can parse. It is written in the
# placeholder's own width, so that the line and column of an error are those of the SQL as written.
_ANY_DAY = "'2000-01-01'"


@dataclass(frozen=True)
class SyntaxProblem:
    line: int  # from 1, in the SQL as written
    column: int  # from 1
    message: str


@dataclass(frozen=True)
class SelectReading:
    tables: tuple[tuple[str, str], ...]  # sorted, distinct (schema, table)
    error: SyntaxProblem | None = None


def upstream_tables(sql: str) -> list[tuple[str, str]]:
    """Sorted, distinct `(schema, table)` pairs that `sql` reads; `[]` when it can't be parsed.

    CTE names are not tables, unqualified tables are in `public`, and names are lower-cased
    because Redshift folds identifiers (quoted ones too, unless enable_case_sensitive_identifier is on).
    """
    return list(read_select(sql).tables)


# The loader and the asset factory both read each SELECT; parsing is ~0.5 ms a query.
@functools.lru_cache(maxsize=4096)
def read_select(sql: str) -> SelectReading:
    """`sql` parsed as Redshift reads it: the tables it reads, or where it stops making sense."""
    unknown = sorted({name for _, _, name in placeholder_spans(sql)} - set(PLACEHOLDERS))
    if unknown:
        return SelectReading((), SyntaxProblem(1, 1, f"unknown placeholder {{{{ {unknown[0]} }}}}"))
    try:
        statements = sqlglot.parse(_bound_in_place(sql), read="redshift")
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        line, column = int(first.get("line") or 1), int(first.get("col") or 1)
        return SelectReading((), SyntaxProblem(line, column, _plain(first.get("description") or str(exc))))
    except Exception as exc:  # sqlglot's tokenizer raises its own types
        return SelectReading((), SyntaxProblem(1, 1, _plain(str(exc))))
    found: set[tuple[str, str]] = set()
    for statement in statements:
        if statement is None:
            continue
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # table functions and the like: `from generate_series(...)`
            name, schema = table.name.lower(), table.db.lower()
            if not schema and name in ctes:
                continue
            found.add((schema or DEFAULT_SCHEMA, name))
    return SelectReading(tuple(sorted(found)))


def _bound_in_place(sql: str) -> str:
    """`sql` with each `{{ placeholder }}` replaced by a date literal padded to the placeholder's width."""
    pieces, pos = [], 0
    for start, end, _ in placeholder_spans(sql):
        pieces += [sql[pos:start], _ANY_DAY.ljust(end - start)]
        pos = end
    return "".join(pieces) + sql[pos:]


def _plain(description: str) -> str:
    """sqlglot's message without its token dumps: `Expected table name but got 'where'`."""
    description = re.sub(r"<Token token_type: [\w.]+, text: ([^,]*),[^>]*>", r"'\1'", description)
    description = re.sub(r"<class 'sqlglot\.[\w.]*?(\w+)'>", r"\1", description)
    return description.split("\n")[0].strip()
