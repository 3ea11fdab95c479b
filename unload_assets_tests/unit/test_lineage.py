import pytest

from unload_assets.catalogue import PACKAGED_CATALOGUE, load_catalogue
from unload_assets.statement.lineage import upstream_tables


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("select * from public.sales", [("public", "sales")], id="qualified"),
        pytest.param("select * from sales", [("public", "sales")], id="unqualified-is-public"),
        pytest.param('select * from "Analytics"."Daily Sales"', [("analytics", "daily sales")], id="quoted"),
        pytest.param("select * from Analytics.SALES", [("analytics", "sales")], id="lower-cased"),
        pytest.param(
            "select s.*, c.name from public.sales s join crm.customers c using (customer_id)"
            " left join public.sales s2 on s2.sale_id = s.sale_id",
            [("crm", "customers"), ("public", "sales")],
            id="joins-deduplicated",
        ),
        pytest.param(
            "with recent as (select * from public.sales where sale_date = {{ partition_date }}),"
            " top as (select * from recent order by amount desc limit 10)"
            " select * from top join customers on true",
            [("public", "customers"), ("public", "sales")],
            id="ctes-excluded",
        ),
        pytest.param(
            "with sales as (select * from staging.sales) select * from sales join public.sales p on true",
            [("public", "sales"), ("staging", "sales")],
            id="cte-shadows-only-unqualified",
        ),
        pytest.param(
            "select * from (select id from raw.events where ts >= {{ partition_start }}"
            " and ts < {{ partition_end }}) e where exists (select 1 from ops.flags f where f.id = e.id)"
            " and e.id in (select id from ops.allow)",
            [("ops", "allow"), ("ops", "flags"), ("raw", "events")],
            id="subqueries",
        ),
        pytest.param(
            "select a from s1.t union all select a from s2.t", [("s1", "t"), ("s2", "t")], id="union"
        ),
        pytest.param("select * from dev.public.sales", [("public", "sales")], id="database-ignored"),
        pytest.param(
            "select * from public.sales where note like '%from x.y%' and amount::int > 0",
            [("public", "sales")],
            id="text-in-literals-is-not-a-table",
        ),
        pytest.param("select 1", [], id="no-tables"),
        pytest.param("select * from generate_series(1, 3)", [], id="table-function"),
    ],
)
def test_upstream_tables(sql, expected):
    assert upstream_tables(sql) == expected


@pytest.mark.parametrize(
    "sql", ["select * from (", "select * from t where d = {{ nope }}", "not sql at all ((", "select 'open"]
)
def test_unparseable_sql_gives_no_tables_and_never_raises(sql):
    assert upstream_tables(sql) == []


def test_result_is_a_fresh_list():
    first = upstream_tables("select * from public.sales")
    first.append(("x", "y"))
    assert upstream_tables("select * from public.sales") == [("public", "sales")]


def test_packaged_targets_lineage():
    tables = {t.name: upstream_tables(t.sql) for t in load_catalogue(PACKAGED_CATALOGUE).targets}
    assert tables == {"sales_data": [("public", "sales")], "customers_snapshot": [("public", "customers")]}
