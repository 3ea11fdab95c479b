from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unload_assets.s3_naming import (
    ALLOWED_VARIABLES,
    check_bucket_name,
    check_key,
    check_key_template,
    render_key,
    template_variables,
)

DAY = date(2026, 3, 7)


@pytest.mark.parametrize(
    ("template", "partition_date", "expected"),
    [
        ("exports/sales/{date}/sales_{date}.csv.gz", DAY, "exports/sales/2026-03-07/sales_2026-03-07.csv.gz"),
        ("exports/{yyyy}/{mm}/{dd}/{target}.json", DAY, "exports/2026/03/07/sales_data.json"),
        ("{target}/dt={date}/part.csv", DAY, "sales_data/dt=2026-03-07/part.csv"),
        ("exports/customers/customers.csv.gz", None, "exports/customers/customers.csv.gz"),
        ("exports/{target}.csv", None, "exports/sales_data.csv"),
        ("y{yyyy}m{mm}", date(1999, 12, 31), "y1999m12"),
    ],
)
def test_render_key(template, partition_date, expected):
    assert render_key(template, target="sales_data", partition_date=partition_date) == expected


def test_render_key_needs_a_date_for_date_variables():
    with pytest.raises(ValueError, match="needs a partition date"):
        render_key("x/{date}.csv", target="t", partition_date=None)


def test_render_key_refuses_a_datetime():
    with pytest.raises(TypeError, match="not a datetime"):
        render_key("x/{date}.csv", target="t", partition_date=datetime(2026, 3, 7, 12))


def test_render_key_checks_the_rendered_key():
    with pytest.raises(ValueError, match="contains ' '"):
        render_key("x/{target}.csv", target="a b", partition_date=None)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain/key.csv", set()),
        ("{target}/{date}/{yyyy}{mm}{dd}", {"target", "date", "yyyy", "mm", "dd"}),
        ("a/{date}/b/{date}", {"date"}),
    ],
)
def test_template_variables(template, expected):
    assert template_variables(template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x/{day}.csv", r"unknown variable \{day\}; allowed: \{target\}, \{date\}"),
        ("x/{date!r}.csv", r"format specs and conversions are not supported: \{date!r\}"),
        ("x/{date:%Y}.csv", r"format specs and conversions are not supported: \{date:%Y\}"),
        ("x/{}.csv", r"unknown variable \{\}"),
        ("x/{0}.csv", r"unknown variable \{0\}"),
        ("x/{date.year}.csv", r"unknown variable \{date.year\}"),
        ("x/{date[0]}.csv", r"unknown variable"),
        ("x/{date.csv", "unbalanced braces"),
        ("x/date}.csv", "unbalanced braces"),
    ],
)
def test_template_variables_refuses(template, message):
    with pytest.raises(ValueError, match=message):
        template_variables(template)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "key is empty"),
        ("/exports/x.csv", "starts with '/'"),
        ("exports/x/", "ends with '/'"),
        ("exports//x.csv", "'//'"),
        ("exports/../x.csv", "'..' path segment"),
        ("exports/./x.csv", "'..' path segment"),
        ("../x.csv", "'..' path segment"),
        ("exports/my file.csv", "contains ' '"),
        ("exports/x\t.csv", r"contains '\\t'"),
        ("exports/o'brien.csv", 'contains "\'"'),
        ('exports/"x".csv', "contains '\"'"),
        ("exports\\x.csv", r"contains '\\\\'"),
        ("exports/\x01.csv", r"contains '\\x01'"),
        ("exports/{{literal}}.csv", "contains '{'"),
        ("exports/" + "a" * 1000, "longer than"),
    ],
)
def test_check_key_template_refuses(template, message):
    with pytest.raises(ValueError, match=message):
        check_key_template(template)


def test_check_key_template_accepts_hive_style_and_returns_variables():
    assert check_key_template("exports/{target}/dt={date}/data.csv.gz") == {"target", "date"}


@pytest.mark.parametrize("name", ["my-bucket", "abc", "a.b-c.d", "x" * 63, "0data"])
def test_bucket_names_accepted(name):
    assert check_bucket_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["ab", "x" * 64, "My-Bucket", "my_bucket", "-bucket", "bucket-", "a..b", "a.-b", "192.168.1.1",
     "xn--bucket", "s3://bucket", "bucket/prefix", "sthree-b", "b-s3alias", "b--ol-s3", "amzn-s3-demo-x"],
)  # fmt: skip
def test_bucket_names_refused(name):
    with pytest.raises(ValueError, match="invalid S3 bucket name"):
        check_bucket_name(name)


_target_names = st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True)


@given(day=st.dates(), target=_target_names)
def test_render_key_matches_the_date_parts(day, target):
    key = render_key("e/{target}/{yyyy}/{mm}/{dd}/{date}.csv", target=target, partition_date=day)
    assert key == f"e/{target}/{day.year:04d}/{day.month:02d}/{day.day:02d}/{day.isoformat()}.csv"
    assert check_key(key) == key


@given(st.text(max_size=60))
def test_template_variables_accepts_only_known_names_or_raises_value_error(template):
    try:
        names = template_variables(template)
    except ValueError:
        return
    assert names <= ALLOWED_VARIABLES
    # Anything it accepts renders without format errors (KeyError, IndexError, AttributeError).
    try:
        render_key(template, target="t", partition_date=DAY)
    except ValueError as exc:
        assert str(exc).startswith("key ")  # only the shape check may still refuse it
