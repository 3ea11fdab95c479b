"""Catalogues for tests: a good one, broken entries (one per kind of problem), and small builders."""

from __future__ import annotations

from datetime import date

GOOD = """\
targets:
  - name: sales
    description: Daily sales.
    sql: select * from public.sales where sale_date = {{ partition_date }}
    key_template: exports/sales/{date}.csv
    partitioning: {type: daily, start_date: "2026-01-01"}
  - name: customers
    description: Every customer.
    sql: select * from public.customers
    key_template: exports/customers.csv
  - name: refunds
    description: Daily refunds.
    sql: |
      select *
      from public.sales
      where amount < 0 and sale_date = {{ partition_date }}
    key_template: exports/refunds/{date}.csv
    partitioning: {type: daily, start_date: "2026-01-01"}
"""


# The fourth entry, one mistake each: (kind, entry, where the problem is told, what it says)
BAD = [
    (
        "unknown_placeholder",
        "  - name: orders\n    description: Orders.\n    sql: select 1 from public.orders\n"
        "    key_template: exports/{day}/orders.csv\n",
        "catalogue.yaml: target 'orders', field 'key_template': unknown variable {day}",
        22,
    ),
    (
        "duplicate_name",
        "  - name: sales\n    description: Again.\n    sql: select 2 from public.orders\n"
        "    key_template: exports/again.csv\n",
        "catalogue.yaml: target 'sales', field 'name': duplicate (first on line 2)",
        19,
    ),
    (
        "bad_format_combination",
        "  - name: orders\n    description: Orders.\n    sql: select 1 from public.orders\n"
        "    key_template: exports/orders.parquet\n    format: parquet\n    header: true\n",
        "catalogue.yaml: target 'orders', field 'header': FORMAT PARQUET can't be combined with HEADER",
        24,
    ),
    (
        "sql_syntax_error",
        "  - name: orders\n    description: Orders.\n    sql: |\n      select order_id,\n"
        "        sum(amount\n      from public.orders\n      group by 1\n"
        "    key_template: exports/orders.csv\n",
        "catalogue.yaml: target 'orders', field 'sql': syntax error at line 3, column 4 of the SQL:"
        " Expecting )",
        24,
    ),
]


KINDS = [b[0] for b in BAD]


ROLE = "arn:aws:iam::123456789012:role/RedshiftUnload"


DAILY = {
    "name": "daily_t",
    "description": "A daily target.",
    "sql": "select * from public.sales where sale_date = {{ partition_date }}",
    "key_template": "exports/{target}/{date}.csv",
    "partitioning": {"type": "daily", "start_date": "2026-01-01"},
}


SNAPSHOT = {
    "name": "snap",
    "description": "A snapshot.",
    "sql": "select * from public.customers",
    "key_template": "exports/customers.csv",
}


def write_catalogue(tmp_path, specs: list[tuple[str, str, str]]):
    body = "targets:"
    for name, table, partitioning in specs:
        where = " where day = {{ partition_date }}" if partitioning else ""
        date = "/{date}" if partitioning else ""
        body += TARGET_TEMPLATE.format(
            name=name, table=table, partitioning=partitioning, where=where, date=date
        )
    path = tmp_path / "catalogue.yaml"
    path.write_text(body)
    return path


EVERY_DAY = "partitioning: {type: daily, start_date: 2026-01-01}"


TARGET_TEMPLATE = """
  - name: {name}
    description: {name}
    sql: "select 1 from public.{table}{where}"
    key_template: exports/{name}{date}.csv
    {partitioning}
"""


def bad_day_catalogue(prefix: str, start: date) -> str:
    """Two daily targets from `start` over `public.<prefix>_rows(id, day, divisor)`: `<prefix>_rows`, the
    day's rows (100 / divisor fails on a day whose divisor is 0: bad data for that day), and
    `<prefix>_count`, the day's count; under `exports/<prefix>/rows|count/<date>.csv`."""
    return f"""
defaults:
  partitioning: {{type: daily, start_date: "{start}"}}
  format: csv
  compression: none
targets:
  - name: {prefix}_rows
    description: the day's rows; 100 / divisor fails on a day whose divisor is 0 (bad data)
    sql: >-
      select id, day, 100 / divisor as share from public.{prefix}_rows
      where day = {{{{ partition_date }}}} order by id
    key_template: exports/{prefix}/rows/{{date}}.csv
  - name: {prefix}_count
    description: the day's count
    sql: select day, count(*) as n from public.{prefix}_rows where day = {{{{ partition_date }}}} group by day
    key_template: exports/{prefix}/count/{{date}}.csv
"""
