"""Deterministic demo data for the local stack: `public.sales` and `public.customers`.

Rows are generated server-side with `generate_series` so that 10 million rows (the benchmark size)
take a minute or two, not an hour of Python round trips. Every value is a pure function of the row
number, the row count and the day window, so two seeds with the same arguments are byte-identical.

The data deliberately contains what breaks naive UNLOAD/CSV code: quotes, backslashes, delimiters,
newlines, tabs, NULLs next to the text 'NULL' and '\\N', empty strings, non-ASCII and multi-KB text.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import psycopg2

# Bump when the generated data changes, so an existing seed made by older code is replaced.
SEED_VERSION = 1
# Any fixed key: it only serialises concurrent seeders (e.g. two test workers) on one database.
_LOCK_KEY = 0x5EED_0DA7A

_CREATE = """
create table public.customers (
    customer_id bigint primary key, name text, email text, country text, created_at timestamp
);
create table public.sales (
    sale_id bigint not null, sale_date date not null, sold_at timestamp, customer_id bigint,
    product text, quantity int, amount numeric(12,2), note text
);
"""

# mod(g, N) = k with small k puts each awkward value in the first rows too, so even a tiny seed
# has all of them. `mod()` rather than `%` keeps the text free of psycopg2 placeholder escapes.
_CUSTOMERS = r"""
insert into public.customers
select g,
    case mod(g, 37)
        when 1 then 'O''Brien & Sons' when 2 then 'The "Best" Shop' when 3 then 'Müller, Zürich AG'
        when 4 then '東京商事' when 5 then 'Rocket 🚀 Ltd' when 6 then 'Pipe|Line Inc'
        when 7 then '' when 8 then null when 9 then E'Two\nLines Ltd' else 'Customer ' || g end,
    case when mod(g, 13) = 0 then null else 'customer' || g || '@example.com' end,
    case when mod(g, 17) = 0 then null
         else (array['US', 'DE', 'CH', 'JP', 'FR', 'BR', 'IN', 'GB'])[1 + mod(g, 8)] end,
    timestamp '2020-01-01' + mod(g * 7919, 4 * 365 * 86400) * interval '1 second'
from generate_series(1::bigint, %(customers)s::bigint) as g
"""

_SALES = r"""
insert into public.sales
select g, d, case when mod(g, 211) = 0 then null else d + mod(g * 7919, 86400) * interval '1 second' end,
    case when mod(g, 89) = 0 then null else 1 + mod(g * 7919, %(customers)s) end,
    case when mod(g, 307) = 0 then null
         else (array['Widget', 'Gadget, large', '12" pizza', 'Bolt|Nut kit', 'Crème brûlée',
                     'Tea ''Earl Grey''', '', 'Party 🎉 pack'])[1 + mod(g * 5, 8)] end,
    q,
    case when mod(g, 401) = 0 then null
         else (q * (1 + mod(g * 7919, 99999)) / 100.0 * (case when mod(g, 97) = 0 then -1 else 1 end))
              ::numeric(12,2) end,
    case when mod(g, 10007) = 16 then repeat(E'Very long note, "quoted" | piped \\ and\nwrapped. ', 96)
         else case mod(g, 101)
            when 1 then 'O''Brien''s order' when 2 then 'He said "fragile, handle with care"'
            when 3 then 'C:\temp\' when 4 then 'a|b|c' when 5 then 'one,two,three'
            when 6 then E'first line\nsecond line' when 7 then E'windows line\r\nending'
            when 8 then E'tab\tseparated' when 9 then 'Zürich' when 10 then '東京'
            when 11 then '📦🚚 delivered' when 12 then '' when 13 then '\N' when 14 then 'NULL'
            when 15 then E'O''Brien | "Zürich" \\ C:\\temp\\, 東京 📦\r\nnext\tline'
            else case when mod(g, 3) = 0 then 'gift wrap' end end end
from generate_series(1::bigint, %(rows)s::bigint) as g,
    -- contiguous days (sale_id grows with time, like a real fact table); every day gets rows
    lateral (select %(first_day)s::date + ((g - 1) * %(days)s / %(rows)s)::int as d) as day,
    lateral (select case when mod(g, 503) = 0 then null else 1 + mod(g * 31, 20) end::int as q) as qty
"""


@dataclass(frozen=True)
class SeedResult:
    rows: int
    customers: int
    first_day: date
    last_day: date
    skipped: bool = False  # an identical seed was already there
    seconds: float = 0.0

    def summary(self) -> str:
        what = "already seeded" if self.skipped else f"seeded in {self.seconds:.1f}s"
        return (
            f"demo data {what}: public.sales {self.rows:,} rows over {self.first_day}..{self.last_day}, "
            f"public.customers {self.customers:,} rows"
        )

    def __str__(self) -> str:
        return self.summary()


def seed_demo_data(
    dsn: str, *, rows: int = 100_000, days: int = 30, today: date | None = None, force: bool = False
) -> SeedResult:
    """Create `public.sales` and `public.customers` over the `days` days before `today` (UTC default).

    Skips the work when the same seed (rows, window, generator version) is already in place; `force`
    rebuilds anyway. The rebuild is one transaction: readers see the old tables or the new ones.
    """
    if days < 1 or rows < days:
        raise ValueError(
            f"seed needs days >= 1 and rows >= days (one row per day at least), got {rows=}, {days=}"
        )
    today = today or datetime.now(timezone.utc).date()
    first_day, last_day = today - timedelta(days=days), today - timedelta(days=1)
    customers = max(100, rows // 20)
    marker = json.dumps(
        {
            "seed": SEED_VERSION,
            "rows": rows,
            "customers": customers,
            "first_day": str(first_day),
            "days": days,
        }
    )
    params = {"rows": rows, "days": days, "customers": customers, "first_day": first_day}
    started = time.monotonic()
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute("set local standard_conforming_strings = on")  # the literals rely on it
            cur.execute(
                "select obj_description(to_regclass('public.sales'), 'pg_class'),"
                " to_regclass('public.customers') is not null"
            )
            existing, has_customers = cur.fetchone()
            if existing == marker and has_customers and not force:
                return SeedResult(rows, customers, first_day, last_day, skipped=True)
            # No CASCADE: silently dropping someone's view over these tables would be worse than failing.
            cur.execute("drop table if exists public.sales, public.customers")
            cur.execute(_CREATE)
            cur.execute("set local maintenance_work_mem = '256MB'")  # faster primary-key build below
            cur.execute(_CUSTOMERS, params)
            cur.execute(_SALES, params)
            # The key is added after the load: one sorted index build beats 10M incremental inserts.
            cur.execute("alter table public.sales add primary key (sale_id)")
            cur.execute("comment on table public.sales is %s", (marker,))
            cur.execute("analyze public.sales")
            cur.execute("analyze public.customers")
    finally:
        conn.close()
    return SeedResult(rows, customers, first_day, last_day, seconds=time.monotonic() - started)
