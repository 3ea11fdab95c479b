"""Upstream Redshift tables of a target's SELECT, read with sqlglot, for the asset lineage graph."""

from __future__ import annotations

import functools
from datetime import date

import sqlglot
from sqlglot import exp

from unload_assets.statement.rules import bind_placeholders

DEFAULT_SCHEMA = "public"  # what an unqualified name resolves to under Redshift's default search_path
# Any date will do: the placeholders only need to become literals sqlglot can parse.
_ANY_DAY = date(2000, 1, 1)


def upstream_tables(sql: str) -> list[tuple[str, str]]:
    """Sorted, distinct `(schema, table)` pairs that `sql` reads; `[]` when it can't be parsed.

    CTE names are not tables, unqualified tables are in `public`, and names are lower-cased
    because Redshift folds identifiers (quoted ones too, unless enable_case_sensitive_identifier is on).
    """
    return list(_upstream_tables(sql))


# The asset factory asks per asset and again for the external table specs; parsing is ~0.5 ms a query.
@functools.lru_cache(maxsize=4096)
def _upstream_tables(sql: str) -> tuple[tuple[str, str], ...]:
    try:
        statements = sqlglot.parse(bind_placeholders(sql, _ANY_DAY), read="redshift")
    except Exception:  # sqlglot raises several types; lineage is best effort and the caller logs `[]`
        return ()
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
    return tuple(sorted(found))
