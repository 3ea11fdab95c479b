from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unload_assets.catalogue import UnloadTarget
from unload_assets.s3_naming import staging_prefix
from unload_assets.statement.auth import UnloadAuth
from unload_assets.statement.build import build_unload, render_select
from unload_assets.statement.rules import (
    MAX_STATEMENT_BYTES,
    bind_placeholders,
    placeholder_names,
    sql_problems,
)
from unload_assets.statement.sqltext import quote_literal, tokenize

DAY = date(2026, 3, 7)
ROLE = "arn:aws:iam::123456789012:role/RedshiftUnload"
TO = "s3://my-bucket/_staging/t/2026-03-07/run1/"
DAILY = {"type": "daily", "start_date": "2026-01-01"}


def target(**fields: object) -> UnloadTarget:
    base: dict[str, object] = {
        "name": "t",
        "description": "test target",
        "sql": "select * from public.sales where sale_date = {{ partition_date }}",
        "key_template": "x/{date}.csv",
        "partitioning": DAILY,
    }
    return UnloadTarget.model_validate(base | fields)


def daily_select(condition: str) -> str:
    return render_select(target(sql=f"select * from s where {condition}"), DAY)


SELECT_DAY = "UNLOAD ('select * from public.sales where sale_date = DATE ''2026-03-07''')"
STATEMENT_CASES = [
    pytest.param(
        {"format": "csv", "compression": "gzip", "header": True, "key_template": "x/{date}.csv.gz"},
        UnloadAuth(iam_role=ROLE),
        # combine (the default): the rename writes the header line once, so UNLOAD writes none
        [SELECT_DAY, f"TO '{TO}'", f"IAM_ROLE '{ROLE}'",
         "FORMAT CSV", "GZIP", "PARALLEL OFF", "MANIFEST VERBOSE"],
        id="csv-gzip-header-combine",
    ),
    pytest.param(
        {"format": "csv", "compression": "gzip", "header": True, "key_template": "x/{date}.csv.gz",
         "on_split": "parts"},
        UnloadAuth(iam_role=ROLE),
        # parts: every part keeps its own header, as COPY ... IGNOREHEADER 1 expects
        [SELECT_DAY, f"TO '{TO}'", f"IAM_ROLE '{ROLE}'",
         "FORMAT CSV", "GZIP", "HEADER", "PARALLEL OFF", "MANIFEST VERBOSE"],
        id="csv-gzip-header-parts",
    ),
    pytest.param(
        {"format": "text", "header": True, "addquotes": True, "delimiter": "~",
         "key_template": "x/{date}.txt", "on_split": "fail"},
        UnloadAuth(iam_role=ROLE),
        [SELECT_DAY, f"TO '{TO}'", f"IAM_ROLE '{ROLE}'",
         "HEADER", "ADDQUOTES", "DELIMITER '~'", "PARALLEL OFF", "MANIFEST VERBOSE"],
        id="text-header-addquotes-fail",
    ),
    pytest.param(
        {"format": "text", "delimiter": "|", "null_as": "\\N", "sql": "select 'O''Brien' as n",
         "partitioning": {"type": "none"}, "key_template": "x.txt"},
        UnloadAuth(access_key_id="AKIAEXAMPLE", secret_access_key="s3cr'et"),
        ["UNLOAD ('select ''O''''Brien'' as n')", f"TO '{TO}'",
         "ACCESS_KEY_ID 'AKIAEXAMPLE' SECRET_ACCESS_KEY 's3cr''et'",
         "DELIMITER '|'", "NULL AS '\\\\N'", "PARALLEL OFF", "MANIFEST VERBOSE"],
        id="text-keys-delimiter-null",
    ),
    pytest.param(
        {"format": "json", "compression": "zstd", "parallel": True, "max_file_size_mb": 100,
         "key_template": "x/{date}.json.zst"},
        UnloadAuth(iam_role="default"),
        [SELECT_DAY, f"TO '{TO}'", "IAM_ROLE default",
         "FORMAT JSON", "ZSTD", "PARALLEL ON", "MAXFILESIZE 100 MB", "MANIFEST VERBOSE"],
        id="json-zstd-parallel-maxfilesize",
    ),
    pytest.param(
        {"format": "parquet", "max_file_size_mb": 6348.8, "key_template": "x/{date}.parquet",
         "on_split": "parts"},
        UnloadAuth(iam_role=f"{ROLE},arn:aws-cn:iam::210987654321:role/Chained"),
        [SELECT_DAY, f"TO '{TO}'", f"IAM_ROLE '{ROLE},arn:aws-cn:iam::210987654321:role/Chained'",
         "FORMAT PARQUET", "PARALLEL OFF", "MAXFILESIZE 6348.8 MB", "MANIFEST VERBOSE"],
        id="parquet-role-chain",
    ),
    pytest.param(
        {"compression": "bzip2", "delimiter": ";", "null_as": "", "key_template": "x/{date}.csv.bz2",
         "sql": "select * from s where t >= {{ partition_start }} and t < {{ partition_end }}"},
        UnloadAuth(access_key_id="AKIA", secret_access_key="SECRET", session_token="TOKEN"),
        ["UNLOAD ('select * from s where t >= TIMESTAMP ''2026-03-07 00:00:00''"
         " and t < TIMESTAMP ''2026-03-08 00:00:00''')",
         f"TO '{TO}'", "ACCESS_KEY_ID 'AKIA' SECRET_ACCESS_KEY 'SECRET' SESSION_TOKEN 'TOKEN'",
         "FORMAT CSV", "BZIP2", "DELIMITER ';'", "NULL AS ''", "PARALLEL OFF", "MANIFEST VERBOSE"],
        id="csv-bzip2-window-session-token",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "auth", "lines"), STATEMENT_CASES)
def test_statement_text(fields, auth, lines):
    t = target(**fields)
    day = DAY if t.partitioning.type == "daily" else None
    assert build_unload(t, partition_date=day, location=TO, auth=auth).sql == "\n".join(lines)


SECRETS = {
    "access_key_id": "AKIAREALKEY",
    "secret_access_key": "wJalr/XUtnFEMI+K",
    "session_token": "FwoGZXIvYXdz",
}


def test_redacted_form_hides_every_secret():
    statement = build_unload(target(), partition_date=DAY, location=TO, auth=UnloadAuth(**SECRETS))
    for secret in SECRETS.values():
        assert secret in statement.sql
        assert secret not in statement.redacted
        assert secret not in repr(statement) and secret not in str(statement)
    assert "ACCESS_KEY_ID '***' SECRET_ACCESS_KEY '***' SESSION_TOKEN '***'" in statement.redacted
    assert statement.redacted.replace("'***'", "") == statement.sql.replace(
        "'AKIAREALKEY'", "").replace("'wJalr/XUtnFEMI+K'", "").replace("'FwoGZXIvYXdz'", "")  # fmt: skip


def test_role_arn_is_not_redacted():
    statement = build_unload(target(), partition_date=DAY, location=TO, auth=UnloadAuth(iam_role=ROLE))
    assert statement.redacted == statement.sql


def test_auth_repr_hides_secrets():
    auth = UnloadAuth(**SECRETS)
    for secret in SECRETS.values():
        assert secret not in repr(auth) and secret not in str(auth)
    assert "'***'" in repr(auth)
    assert ROLE in repr(UnloadAuth(iam_role=ROLE))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "set an IAM role"),
        ({"access_key_id": "AKIA"}, "set an IAM role"),
        ({"secret_access_key": "s"}, "set an IAM role"),
        ({"iam_role": ROLE, "access_key_id": "AKIA", "secret_access_key": "s"}, "not both"),
        ({"iam_role": ROLE, "session_token": "t"}, "not both"),
        ({"iam_role": "arn:aws:iam::123:role/x"}, "invalid IAM role"),
        ({"iam_role": f"{ROLE}, {ROLE}"}, "invalid IAM role"),
        ({"iam_role": f"{ROLE}'"}, "must not contain quotes"),
        ({"iam_role": ",".join([ROLE] * 11)}, "at most 10"),
    ],
)
def test_auth_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        UnloadAuth(**fields)


def test_auth_treats_empty_strings_as_unset():
    auth = UnloadAuth(iam_role=ROLE, access_key_id="", secret_access_key="", session_token="")
    assert auth.access_key_id is None and auth.session_token is None


D = "DATE '2026-03-07'"
P = "{{ partition_date }}"
E = "{{ partition_end }}"
BINDING_CASES = [
    (f"d = {P}", f"d = {D}"),
    ("d = {{partition_date}}", f"d = {D}"),
    ("t >= {{ partition_start }} and t < {{ partition_end }}",
     "t >= TIMESTAMP '2026-03-07 00:00:00' and t < TIMESTAMP '2026-03-08 00:00:00'"),
    (f"note = '{P}' and d = {P}", f"note = '{P}' and d = {D}"),
    (f"note = 'it\\'s {P}' and d = {P}", f"note = 'it\\'s {P}' and d = {D}"),
    (f'"{P}" = 1 and d = {P}', f'"{P}" = 1 and d = {D}'),
    (f"d = {P} -- not {E}", f"d = {D} -- not {E}"),
    (f"/* {E} /* nested */ {E} */ d = {P}", f"/* {E} /* nested */ {E} */ d = {D}"),
    (f"x = $$ {E} $$ and d = {P}", f"x = $$ {E} $$ and d = {D}"),
    (f"x like '%a_b%' and y::int > 0 and z = $q$it's$q$ and d = {P}",
     f"x like '%a_b%' and y::int > 0 and z = $q$it's$q$ and d = {D}"),
    (f"x ~ '\\\\d+' and d = {P}", f"x ~ '\\\\d+' and d = {D}"),
]  # fmt: skip


@pytest.mark.parametrize(("condition", "expected"), BINDING_CASES)
def test_placeholders_are_bound_only_in_sql_code(condition, expected):
    assert daily_select(condition) == f"select * from s where {expected}"


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        (date(2026, 12, 31), "2026-12-31", "2027-01-01"),
        (date(2028, 2, 28), "2028-02-28", "2028-02-29"),
        (date(2028, 2, 29), "2028-02-29", "2028-03-01"),
    ],
)
def test_partition_end_is_the_next_midnight(day, start, end):
    bound = bind_placeholders("select {{ partition_start }}, {{ partition_end }}", day)
    assert bound == f"select TIMESTAMP '{start} 00:00:00', TIMESTAMP '{end} 00:00:00'"


def test_render_select_partition_argument_must_match_partitioning():
    with pytest.raises(ValueError, match="partition_date is required"):
        render_select(target(), None)
    snapshot = target(sql="select 1", key_template="x.csv", partitioning={"type": "none"})
    assert render_select(snapshot, None) == "select 1"
    with pytest.raises(ValueError, match="must be None"):
        render_select(snapshot, DAY)
    with pytest.raises(TypeError, match="not a datetime"):
        render_select(target(), datetime(2026, 3, 7))


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("select 1;", "contains ';'"),
        ("select 1; select 2", "contains ';'"),
        ("delete from t", "must be a SELECT"),
        ("select 'abc", "unterminated quoted string starting on line 1"),
        ("select 1\n/* open", "unterminated /* comment starting on line 2"),
        ("select * from t limit 10", "outer LIMIT"),
        ("select * from t order by 1 fetch first 5 rows only", "outer LIMIT"),
        ("select {{ day }}", "unknown placeholder {{ day }}"),
        ("select { partition_date }", "stray brace"),
        ("select {{ partition_date }", "stray brace"),
    ],
)
def test_sql_problems(sql, problem):
    problems = sql_problems(sql)
    assert any(problem in found for found in problems), problems


@pytest.mark.parametrize(
    "sql",
    [
        "select * from (select * from t limit 10)",
        "with x as (select * from t limit 5) select * from x",
        "select 'limit 5; {{ x }}' as note -- limit 1;",
        "(select 1)",
        'select 1 as "limit"',
    ],
)
def test_sql_without_problems(sql):
    assert sql_problems(sql) == []


def test_placeholder_names_ignore_literals_and_comments():
    sql = "select '{{ partition_end }}' /* {{ partition_start }} */ from t where d = {{ partition_date }}"
    assert placeholder_names(sql) == {"partition_date"}


def test_staging_prefix():
    common = {"bucket": "my-bucket", "target_name": "sales_data", "run_id": "0a1b-2c3d"}
    assert staging_prefix(staging_prefix="_staging", partition_key="2026-03-07", **common) == (
        "s3://my-bucket/_staging/sales_data/2026-03-07/0a1b-2c3d/"
    )
    assert staging_prefix(staging_prefix="/tmp/unload/", partition_key=None, **common) == (
        "s3://my-bucket/tmp/unload/sales_data/unpartitioned/0a1b-2c3d/"
    )
    assert staging_prefix(staging_prefix="", partition_key=None, **common | {"run_id": "r1/attempt-2"}) == (
        "s3://my-bucket/sales_data/unpartitioned/r1/attempt-2/"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bucket": "My_Bucket"}, "invalid S3 bucket name"),
        ({"staging_prefix": "a/../b"}, "'..'"),
        ({"run_id": "../x"}, "run_id"),
        ({"run_id": "a b"}, "run_id"),
        ({"partition_key": "2026/03/07"}, "partition_key"),
        ({"target_name": "x/y"}, "target_name"),
    ],
)
def test_staging_prefix_refuses(overrides, message):
    args = {"bucket": "b-1", "staging_prefix": "_s", "target_name": "t", "partition_key": None, "run_id": "r"}
    with pytest.raises(ValueError, match=message):
        staging_prefix(**args | overrides)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"format": "parquet", "header": True},
            "field 'header': FORMAT PARQUET can't be combined with HEADER",
        ),
        ({"format": "parquet", "compression": "gzip"}, "field 'compression': FORMAT PARQUET"),
        ({"format": "parquet", "delimiter": ","}, "field 'delimiter': FORMAT PARQUET"),
        ({"format": "parquet", "null_as": ""}, "field 'null_as': FORMAT PARQUET"),
        ({"format": "json", "header": True}, "field 'header': FORMAT JSON can't be combined with HEADER"),
        ({"format": "json", "delimiter": ","}, "field 'delimiter': FORMAT JSON"),
        ({"format": "json", "null_as": "NULL"}, "field 'null_as': FORMAT JSON"),
        ({"delimiter": "\n"}, "field 'delimiter': a line break"),
        ({"format": "csv", "delimiter": '"'}, "CSV quote character"),
        (
            {"format": "csv", "addquotes": True},
            "field 'addquotes': FORMAT CSV can't be combined with ADDQUOTES",
        ),
        ({"format": "json", "addquotes": True}, "field 'addquotes': FORMAT JSON"),
        ({"format": "parquet", "addquotes": True}, "field 'addquotes': FORMAT PARQUET"),
    ],
)
def test_refused_option_combinations(fields, message):
    with pytest.raises(ValueError, match=message):
        target(**fields)
    # build_unload refuses them too, even for a target that skipped validation.
    unchecked = target().model_copy(update=fields)
    with pytest.raises(ValueError, match="target 't'"):
        build_unload(unchecked, partition_date=DAY, location=TO, auth=UnloadAuth(iam_role=ROLE))


def test_statement_over_16_mb_is_refused():
    # Quotes double when the select is quoted, so 9 MB of them make an 18 MB statement.
    huge = target().model_copy(update={"sql": "select '" + "''" * (9 * 1024 * 1024 // 2) + "' as x"})
    assert len(huge.sql) < MAX_STATEMENT_BYTES
    with pytest.raises(ValueError, match="16 MB"):
        build_unload(huge, partition_date=DAY, location=TO, auth=UnloadAuth(iam_role=ROLE))


def test_location_must_be_s3():
    with pytest.raises(ValueError, match="s3://"):
        build_unload(target(), partition_date=DAY, location="/tmp/x/", auth=UnloadAuth(iam_role=ROLE))


# NUL is the one character no statement can carry (psycopg2 refuses it); the catalogue refuses it too.
@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0")))
def test_any_literal_survives_quoting(text):
    """Whatever a string literal in the select holds reaches Redshift intact, placeholders included."""
    literal = quote_literal(text)  # how the text is written inside the select
    t = target(sql=f"select {literal} as v from t where d = {{{{ partition_date }}}}")
    select = render_select(t, DAY)
    assert select == f"select {literal} as v from t where d = DATE '2026-03-07'"
    statement = build_unload(t, partition_date=DAY, location=TO, auth=UnloadAuth(iam_role=ROLE))
    assert quote_literal(select) in statement.sql
    # Redshift's lexer reads back exactly the select, and from it exactly the text.
    tokens = list(tokenize(statement.sql))
    assert tokens[2].kind == "string" and tokens[2].value == select
    assert next(tok for tok in tokenize(select) if tok.kind == "string").value == text
