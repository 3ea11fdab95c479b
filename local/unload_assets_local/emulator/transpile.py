"""Redshift SQL -> PostgreSQL SQL, with sqlglot: for the unloaded query, and for ordinary statements
that use what only Redshift has (`redshift_only`).

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
    try:
        trees = sqlglot.parse(select, read="redshift")
        if len(trees) != 1 or trees[0] is None:
            return None
        return trees[0].transform(_patch).sql(dialect="postgres")
    except Exception as exc:  # noqa: BLE001 - sqlglot raises many kinds; the original text is the fallback
        log.debug("sqlglot could not transpile the UNLOAD query, running it as written: %s", exc)
        return None


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
    if not redshift_only(sql):
        return None
    return to_postgres(sql)


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
    # SYSDATE is a timestamp without time zone on Redshift.
    if isinstance(node, exp.CurrentTimestamp) and node.args.get("sysdate"):
        return exp.Var(this="LOCALTIMESTAMP")  # a keyword: no parentheses
    # ISNULL(a, b) is NVL's alias on Redshift; PostgreSQL only knows the postfix operator.
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "ISNULL" and len(node.expressions) == 2:
        return exp.Coalesce(this=node.expressions[0].copy(), expressions=[node.expressions[1].copy()])
    return node
