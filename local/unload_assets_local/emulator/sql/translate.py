"""Redshift SQL -> PostgreSQL SQL, with sqlglot: for the unloaded query, for ordinary statements that
use what only Redshift has (`redshift_only`), and for what only Redshift's parser accepts in the SQL
tools send: a derived table without an alias, an output alias used in WHERE, `WHERE 1 AND ...`, a
late-binding view (`WITH NO SCHEMA BINDING`, created bound), and the columns Redshift adds to
`pg_class`/`pg_attribute`/`pg_attrdef` (see `Redshift's own SQL` below).

sqlglot reads Redshift's string literals (backslash escapes included) and writes standard-conforming
PostgreSQL literals, so its output runs with standard_conforming_strings on; the original text, the
fallback when sqlglot cannot read it, runs with it off. A few sqlglot outputs that PostgreSQL does not
accept are patched here.
"""

from __future__ import annotations

import logging
import re

import sqlglot
from sqlglot import exp

log = logging.getLogger(__name__)


def to_postgres(select: str) -> str | None:
    """The query in PostgreSQL's dialect (standard-conforming literals), or None if sqlglot cannot."""
    tree = _parse(select)
    if tree is None:
        return None
    _redshift_grammar(tree, reads_catalog=_READS_CATALOG.search(select) is not None)
    return tree.transform(_patch).sql(dialect="postgres")


def _parse(sql: str) -> exp.Expression | None:
    try:
        trees = sqlglot.parse(sql, read="redshift")
    except Exception as exc:  # noqa: BLE001 - sqlglot raises many kinds; the original text is the fallback
        log.debug("sqlglot could not read the statement, running it as written: %s", exc)
        return None
    tree = trees[0] if len(trees) == 1 else None
    return tree if isinstance(tree, exp.Expression) else None


# What everyday Redshift SQL uses and PostgreSQL refuses: its functions (GETDATE, SYSDATE, NVL, NVL2,
# DATEADD, DATEDIFF, DECODE, LEN, LISTAGG, CONVERT_TIMEZONE, ISNULL), TOP n, and the table design
# clauses of CREATE TABLE (DISTSTYLE, DISTKEY, SORTKEY, ENCODE, IDENTITY). A statement that names none
# goes to PostgreSQL exactly as written.
_REDSHIFT_ONLY = re.compile(
    r"\b(GETDATE|SYSDATE|NVL2?|DATEADD|DATEDIFF|DECODE|LEN|LISTAGG|CONVERT_TIMEZONE|ISNULL|TOP|"
    r"DISTSTYLE|DISTKEY|SORTKEY|ENCODE|IDENTITY)\b",
    re.IGNORECASE,
)
_TABLE_DESIGN = (exp.DistStyleProperty, exp.DistKeyProperty, exp.SortKeyProperty)
_ENCODE = exp.EncodeColumnConstraint


def redshift_only(sql: str) -> bool:
    return _REDSHIFT_ONLY.search(sql) is not None


def statement_to_postgres(sql: str) -> str | None:
    """An ordinary statement in PostgreSQL's dialect when it uses what only Redshift has; None to send it
    as written (nothing Redshift-only in it, or sqlglot cannot read it: PostgreSQL then says why)."""
    if redshift_only(sql):
        return to_postgres(sql)
    if not _REDSHIFT_GRAMMAR.search(sql):
        return None
    tree = _parse(sql)
    reads_catalog = _READS_CATALOG.search(sql) is not None
    if tree is None or not _redshift_grammar(tree, reads_catalog=reads_catalog):
        return None  # PostgreSQL reads it as it is: sent exactly as written
    return tree.transform(_patch).sql(dialect="postgres")


# ---- Redshift's own SQL: what its parser accepts and PostgreSQL's refuses ----------------------------

# A cheap look first: a derived table (`FROM (` / `JOIN (`), a number where WHERE wants a condition, a
# late-binding view, or the Redshift catalog (its views, or the columns it adds to PostgreSQL's).
_REDSHIFT_GRAMMAR = re.compile(
    r"\b(?:FROM|JOIN)\s*\(|\bWHERE\s+[0-9]|\bSCHEMA\s+BINDING\b|\bPG_CATALOG\.|\bSVV_|\bPG_TABLE_DEF\b|\bPG_GET_LATE_BINDING_VIEW_COLS\b|"
    r"\b(?:RELDISTSTYLE|ATTENCODINGTYPE|ATTISDISTKEY|ATTSORTKEYORD|ADSRC)\b",
    re.IGNORECASE,
)
# Where a tool reads the Redshift catalog, an output alias in WHERE is read as Redshift reads it.
_READS_CATALOG = re.compile(r"\bPG_CATALOG\.|\bSVV_|\bPG_GET_LATE_BINDING_VIEW_COLS\b", re.IGNORECASE)
# The columns Redshift adds to PostgreSQL's catalog tables, as every table here reads: DISTSTYLE EVEN
# (0), no column encoding (0), no distribution or sort key column; `pg_attrdef.adsrc` (dropped from
# PostgreSQL in 12) is the default's text.
_CATALOG_COLUMNS: dict[str, str] = {
    "reldiststyle": "0",
    "attencodingtype": "0",
    "attisdistkey": "false",
    "attsortkeyord": "0",
    "adsrc": "pg_catalog.pg_get_expr(adbin, adrelid)",
}


def _redshift_grammar(tree: exp.Expression, *, reads_catalog: bool) -> bool:
    """Put what only Redshift's parser accepts in PostgreSQL's words, in place; whether anything changed."""
    changed = False
    # A late-binding view (`WITH NO SCHEMA BINDING`): PostgreSQL binds every view to its tables.
    if isinstance(tree, exp.Create) and tree.args.get("no_schema_binding"):
        tree.set("no_schema_binding", False)
        changed = True
    for number, subquery in enumerate(list(tree.find_all(exp.Subquery)), 1):
        # `FROM (select ...)` without an alias: PostgreSQL (before 16) wants one.
        if isinstance(subquery.parent, exp.From | exp.Join) and not subquery.alias:
            subquery.set("alias", exp.TableAlias(this=exp.to_identifier(f"derived_table{number}")))
            changed = True
    for column in list(tree.find_all(exp.Column)):
        replacement = _CATALOG_COLUMNS.get(column.name.lower()) if reads_catalog else None
        if replacement is not None and not column.this.quoted:
            value = sqlglot.parse_one(replacement, read="postgres")
            if isinstance(column.parent, exp.Select):  # a projection keeps its output name
                value = exp.alias_(value, column.name)
            column.replace(value)
            changed = True
    for select in list(tree.find_all(exp.Select)):
        where = select.args.get("where")
        if where is not None:
            changed |= _truth_of_numbers(where)
        if reads_catalog:
            changed |= _output_aliases_in_where(select, where)
    return changed


def _truth_of_numbers(where: exp.Where) -> bool:
    """`WHERE 1 AND ...`: a number where a condition belongs is true unless it is 0, as on Redshift."""
    operands = [where.this]
    for connector in where.find_all(exp.Connector, exp.Not):
        operands.extend(connector.iter_expressions())
    changed = False
    for node in operands:
        if isinstance(node, exp.Literal) and not node.is_string:
            node.replace(exp.Boolean(this=float(node.this) != 0))
            changed = True
    return changed


def _output_aliases_in_where(select: exp.Select, where: exp.Where | None) -> bool:
    """An unqualified name in WHERE (or in a later projection) that names no input column but an output
    alias means the aliased expression on Redshift. Which input columns exist is the catalog's to say;
    here a name counts as an alias when a projection is aliased to it and is not simply the column of
    that name."""
    aliases: dict[str, exp.Expression] = {}
    changed = False
    for projection in select.expressions:
        # A projection may use the aliases before it (Redshift's lateral column aliases).
        changed |= _expand_aliases(projection, select, aliases)
        if isinstance(projection, exp.Alias) and projection.alias:
            inner = projection.this
            if not (isinstance(inner, exp.Column) and inner.name.lower() == projection.alias.lower()):
                aliases[projection.alias.lower()] = inner
    if where is not None:
        changed |= _expand_aliases(where, select, aliases)
    return changed


def _expand_aliases(node: exp.Expression, select: exp.Select, aliases: dict[str, exp.Expression]) -> bool:
    changed = False
    for column in list(node.find_all(exp.Column)):
        if column.table or column.find_ancestor(exp.Select) is not select:
            continue
        aliased = aliases.get(column.name.lower())
        if aliased is not None:
            column.replace(exp.Paren(this=aliased.copy()))
            changed = True
    return changed


def _patch(node: exp.Expression) -> exp.Expression:
    # LISTAGG(x, sep) WITHIN GROUP (ORDER BY ...) -> STRING_AGG(x, sep ORDER BY ...): PostgreSQL has no
    # WITHIN GROUP for string_agg.
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.GroupConcat):
        agg, order = node.this, node.expression
        if isinstance(order, exp.Order) and not isinstance(agg.this, exp.Distinct):
            ordered = exp.Order(this=agg.this.copy(), expressions=[e.copy() for e in order.expressions])
            return exp.GroupConcat(this=ordered, separator=agg.args.get("separator"))
    # CREATE TABLE's distribution, sort keys and column encodings tune Redshift's storage; PostgreSQL
    # has no such thing, and the table is the same without them.
    if isinstance(node, _TABLE_DESIGN):
        return None  # type: ignore[return-value]
    if isinstance(node, exp.ColumnConstraint) and isinstance(
        node.args.get("kind"), exp.EncodeColumnConstraint
    ):
        return None  # type: ignore[return-value]
    # REGEXP_SUBSTR(s, pattern[, position[, occurrence]]) is PostgreSQL's too (15+); sqlglot would write
    # a REGEXP_EXTRACT that PostgreSQL does not have.
    if isinstance(node, exp.RegexpExtract) and not node.args.get("group"):
        present: list[exp.Expression] = []
        for key in ("this", "expression", "position", "occurrence"):
            arg = node.args.get(key)
            if not isinstance(arg, exp.Expression):
                break
            present.append(arg.copy())
        return exp.Anonymous(this="REGEXP_SUBSTR", expressions=present)
    # SYSDATE is a timestamp without time zone on Redshift.
    if isinstance(node, exp.CurrentTimestamp) and node.args.get("sysdate"):
        return exp.Var(this="LOCALTIMESTAMP")  # a keyword: no parentheses
    # ISNULL(a, b) is NVL's alias on Redshift; PostgreSQL only knows the postfix operator.
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "ISNULL" and len(node.expressions) == 2:
        return exp.Coalesce(this=node.expressions[0].copy(), expressions=[node.expressions[1].copy()])
    return node
