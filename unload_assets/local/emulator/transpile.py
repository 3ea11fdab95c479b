"""Redshift SQL -> PostgreSQL SQL for the unloaded query, with sqlglot.

sqlglot reads Redshift's string literals (backslash escapes included) and writes standard-conforming
PostgreSQL literals, so its output runs with standard_conforming_strings on; the original text, the
fallback when sqlglot cannot read it, runs with it off. A few sqlglot outputs that PostgreSQL does not
accept are patched here.
"""

from __future__ import annotations

import logging

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


def _patch(node: exp.Expression) -> exp.Expression:
    # LISTAGG(x, sep) WITHIN GROUP (ORDER BY ...) -> STRING_AGG(x, sep ORDER BY ...): PostgreSQL has no
    # WITHIN GROUP for string_agg.
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.GroupConcat):
        agg, order = node.this, node.expression
        if isinstance(order, exp.Order) and not isinstance(agg.this, exp.Distinct):
            ordered = exp.Order(this=agg.this.copy(), expressions=[e.copy() for e in order.expressions])
            return exp.GroupConcat(this=ordered, separator=agg.args.get("separator"))
    # SYSDATE is a timestamp without time zone on Redshift.
    if isinstance(node, exp.CurrentTimestamp) and node.args.get("sysdate"):
        return exp.Anonymous(this="LOCALTIMESTAMP")
    # ISNULL(a, b) is NVL's alias on Redshift; PostgreSQL only knows the postfix operator.
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "ISNULL" and len(node.expressions) == 2:
        return exp.Coalesce(this=node.expressions[0].copy(), expressions=[node.expressions[1].copy()])
    return node
