"""Demo data seeding against the session's real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from unload_assets_local.postgres import PostgresCluster
from unload_assets_local.seed import SeedResult, seed_demo_data

TODAY = date(2024, 3, 1)
DB = "seed_test"


@pytest.fixture(scope="module")
def dsn(pg_cluster: PostgresCluster) -> Iterator[str]:
    # A database of our own: other tests use `dev` and must not see these tables change under them.
    admin = psycopg2.connect(pg_cluster.dsn(superuser=True, database="postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {DB}")
        cur.execute(f'create database {DB} owner "{pg_cluster.user}"')
    yield pg_cluster.dsn(database=DB)  # the normal user, as the stack seeds
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {DB} with (force)")
    admin.close()


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.close()
    return rows


def fingerprint(dsn: str) -> tuple[str, str]:
    sales = query(dsn, "select md5(string_agg(s::text, E'\\n' order by sale_id)) from public.sales s")
    customers = query(
        dsn, "select md5(string_agg(c::text, E'\\n' order by customer_id)) from public.customers c"
    )
    return sales[0][0], customers[0][0]


def test_counts_and_every_day_of_the_window(dsn: str) -> None:
    result = seed_demo_data(dsn, rows=100_000, days=30, today=TODAY, force=True)
    assert (result.rows, result.customers) == (100_000, 5_000)
    assert (result.first_day, result.last_day) == (date(2024, 1, 31), date(2024, 2, 29))
    assert query(dsn, "select count(*) from public.sales")[0][0] == 100_000
    assert query(dsn, "select count(*) from public.customers")[0][0] == 5_000
    per_day = dict(query(dsn, "select sale_date, count(*) from public.sales group by 1"))
    assert sorted(per_day) == [result.first_day + timedelta(days=i) for i in range(30)]
    assert min(per_day.values()) >= 100_000 // 30
    assert "100,000" in result.summary() and "2024-02-29" in str(result)


def test_default_window_ends_yesterday_utc(dsn: str) -> None:
    before = datetime.now(timezone.utc).date()
    result = seed_demo_data(dsn, rows=1_000, days=7)
    after = datetime.now(timezone.utc).date()
    assert result.last_day in {before - timedelta(days=1), after - timedelta(days=1)}
    yesterday_rows = query(dsn, "select count(*) from public.sales where sale_date = %s", result.last_day)
    assert yesterday_rows[0][0] > 0


def test_two_seeds_are_identical(dsn: str) -> None:
    seed_demo_data(dsn, rows=20_000, days=10, today=TODAY, force=True)
    first = fingerprint(dsn)
    seed_demo_data(dsn, rows=20_000, days=10, today=TODAY, force=True)
    assert fingerprint(dsn) == first
    seed_demo_data(dsn, rows=20_000, days=10, today=TODAY + timedelta(days=1), force=True)
    assert fingerprint(dsn)[0] != first[0]  # the window moves with `today`


def test_reseeding_is_idempotent(dsn: str) -> None:
    seed_demo_data(dsn, rows=5_000, days=5, today=TODAY)
    oid = query(dsn, "select 'public.sales'::regclass::oid")[0][0]
    again = seed_demo_data(dsn, rows=5_000, days=5, today=TODAY)
    assert again.skipped and "already seeded" in again.summary()
    assert query(dsn, "select 'public.sales'::regclass::oid")[0][0] == oid  # nothing rebuilt
    changed = seed_demo_data(dsn, rows=6_000, days=5, today=TODAY)
    assert not changed.skipped
    assert query(dsn, "select count(*) from public.sales")[0][0] == 6_000


AWKWARD_NOTES = [
    "O'Brien's order",
    'He said "fragile, handle with care"',
    "C:\\temp\\",
    "a|b|c",
    "one,two,three",
    "first line\nsecond line",
    "windows line\r\nending",
    "tab\tseparated",
    "Zürich",
    "東京",
    "📦🚚 delivered",
    "",
    "\\N",
    "NULL",
    'O\'Brien | "Zürich" \\ C:\\temp\\, 東京 📦\r\nnext\tline',
]
AWKWARD_NAMES = ["O'Brien & Sons", 'The "Best" Shop', "Müller, Zürich AG", "東京商事", "Rocket 🚀 Ltd", ""]
NULLABLE = {
    "sales": ["sold_at", "customer_id", "product", "quantity", "amount", "note"],
    "customers": ["name", "email", "country"],
}


@pytest.mark.parametrize("rows", [30, 100_000])
def test_awkward_values_are_present(dsn: str, rows: int) -> None:
    # Even the smallest seed (one row a day for 30 days) carries every awkward value.
    seed_demo_data(dsn, rows=rows, days=30, today=TODAY)
    notes = {r[0] for r in query(dsn, "select distinct note from public.sales where note is not null")}
    assert set(AWKWARD_NOTES) <= notes
    assert max(len(n) for n in notes) >= 4_000  # multi-KB text
    names = {r[0] for r in query(dsn, "select distinct name from public.customers")}
    assert set(AWKWARD_NAMES) <= names
    assert query(dsn, "select count(*) from public.sales where product = '' or product like '%%|%%'")[0][0]
    if rows < 1_000:
        return  # the sparser NULL patterns need more rows than one a day
    for table, columns in NULLABLE.items():
        nulls = ", ".join(f"count(*) filter (where {c} is null)" for c in columns)
        counts = query(dsn, f"select {nulls} from public.{table}")[0]
        assert all(counts), dict(zip(columns, counts, strict=True))


def test_100k_rows_seed(dsn: str) -> None:
    # Its speed (0.3 s here) is a benchmark figure, not an assertion.
    result = seed_demo_data(dsn, rows=100_000, days=30, today=TODAY, force=True)
    assert isinstance(result, SeedResult) and not result.skipped


@pytest.mark.parametrize(("rows", "days"), [(10, 30), (100, 0)])
def test_impossible_windows_are_refused(dsn: str, rows: int, days: int) -> None:
    with pytest.raises(ValueError, match="rows >= days"):
        seed_demo_data(dsn, rows=rows, days=days, today=TODAY)
