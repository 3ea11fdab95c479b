"""The emulator's UNLOAD parser: every documented form accepted, everything Redshift refuses refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unload_assets_local.emulator.sql.statements import is_unload
from unload_assets_local.emulator.unload.command import (
    MAXFILESIZE_MAX,
    MB,
    UnloadCommand,
    UnloadError,
)
from unload_assets_local.emulator.unload.parser import parse_unload

from unload_assets.statement.sqltext import has_outer_limit, quote_literal

GB = 1024 * MB
HEAD = "UNLOAD ('select * from t') TO 's3://bucket/prefix/'"
BASE = f"{HEAD} IAM_ROLE default"
ARN = "arn:aws:iam::123456789012:role/Unloader"
ARN2 = "arn:aws-cn:iam::210987654321:role/path/Chained"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN/abc+def=="


def refusal(sql: str) -> str:
    with pytest.raises(UnloadError) as info:
        parse_unload(sql)
    message = str(info.value)
    assert message.startswith("UNLOAD: ")
    return message


# -- the statement ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UNLOAD ('select 1') TO 's3://b/p' IAM_ROLE default", True),
        ("  unload('select 1')", True),
        ("-- note\n/* block /* nested */ */ Unload ('x')", True),
        ("UNLOADX ('select 1')", False),
        ("select 'UNLOAD'", False),
        ("/* UNLOAD */ select 1", False),
        ("", False),
        ("/* unterminated UNLOAD", False),
        ('"unload"', False),
    ],
)
def test_is_unload(sql: str, expected: bool) -> None:
    assert is_unload(sql) is expected


def test_defaults() -> None:
    expected = UnloadCommand(select="select * from t", to="s3://bucket/prefix/", auth="iam_role")
    assert parse_unload(BASE) == expected


@pytest.mark.parametrize(
    ("sql", "select"),
    [
        ("UNLOAD ('select ''O''''Brien''')", "select 'O''Brien'"),
        ("UNLOAD ('select \\'x\\'')", "select 'x'"),
        ("UNLOAD ('select ''c:\\\\tmp''')", "select 'c:\\tmp'"),
        ("UNLOAD ('select 1 -- it''s\n')", "select 1 -- it's\n"),
        ("UNLOAD ($$select 'a', '\\' from t$$)", "select 'a', '\\' from t"),
        ("UNLOAD ($q$select $$x$$$q$)", "select $$x$$"),
        ("unload(\n  'select 1'\n)", "select 1"),
    ],
)
def test_select_literal_is_unescaped(sql: str, select: str) -> None:
    assert parse_unload(f"{sql} TO 's3://b/p' IAM_ROLE default").select == select


def assert_round_trip(s: str) -> None:
    sql = f"UNLOAD ({quote_literal(s)}) TO 's3://b/p/' IAM_ROLE default"
    if has_outer_limit(s):
        assert "Limit clause is not supported" in refusal(sql)
    else:
        assert parse_unload(sql).select == s


@given(st.text())
@settings(max_examples=300)
def test_select_round_trips_through_quote_literal(s: str) -> None:
    assert_round_trip(s)


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["'", "''", "\\", "\\'", "$$", "--", "/*", "*/", "\n", " limit 1", ";", "("]),
            st.characters(),
        )
    ).map("".join)
)
@settings(max_examples=300)
def test_select_round_trips_with_sql_noise(s: str) -> None:
    assert_round_trip(s)


@pytest.mark.parametrize(
    "sql",
    [
        f"{BASE};",
        f"{BASE} ;  -- done\n",
        f"/* lead */ {BASE} /* trail */ ; /* after */",
        BASE.replace(" ", "\n\t"),
    ],
)
def test_trailing_semicolon_whitespace_and_comments(sql: str) -> None:
    assert parse_unload(sql).to == "s3://bucket/prefix/"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("select 1", "not an UNLOAD statement"),
        ("UNLOAD 'select 1' TO 's3://b/p' IAM_ROLE default", "expected ('select-statement') after UNLOAD"),
        ("UNLOAD (select 1) TO 's3://b/p' IAM_ROLE default", "expected the query as a quoted string"),
        ("UNLOAD ('select 1' TO 's3://b/p' IAM_ROLE default", "must be followed by ')'"),
        ("UNLOAD ('select 1') 's3://b/p' IAM_ROLE default", "expected TO 's3://bucket/prefix'"),
        ("UNLOAD ('select 1') TO s3 IAM_ROLE default", "expected a quoted string after TO"),
        ("UNLOAD ('select 1) TO s3", "unterminated quoted string at position 9"),
        ("UNLOAD ($$select 1) TO 's3://b/p' IAM_ROLE default", "unterminated dollar-quoted string"),
        (f"{BASE} /* open", "unterminated /* comment"),
        (f"{BASE}; select 1", "only one statement"),
        (f"{BASE};;", "only one statement"),
        (f"{BASE} frobnicate", 'syntax error at or near "frobnicate": not an UNLOAD option'),
        (f"{BASE} GZIP, HEADER", 'syntax error at or near ","'),
        (f"{BASE} 'x'", "syntax error at or near a quoted string"),
        (f"{BASE} 42", 'syntax error at or near "42"'),
        (f"{HEAD} IAM_ROLE default AS", 'syntax error at or near "AS"'),
    ],
)
def test_statement_syntax_errors(sql: str, message: str) -> None:
    assert message in refusal(sql)


@pytest.mark.parametrize(
    "select",
    [
        "select * from t limit 10",
        "SELECT * FROM (SELECT 1 LIMIT 1) x LIMIT 1;",
        "with a as (select 1) select * from a LIMIT 1",
        "select 1 union select 2 limit 1",
    ],
)
def test_outer_limit_refused(select: str) -> None:
    message = refusal(f"UNLOAD ({quote_literal(select)}) TO 's3://b/p' IAM_ROLE default")
    assert "Limit clause is not supported in the outer select of UNLOAD" in message


@pytest.mark.parametrize(
    "select",
    [
        "select * from (select * from t limit 10)",
        "with a as (select * from t limit 5) select * from a",
        "select 'limit 1', $$limit 2$$, \"limit\" from t -- limit 3",
        "(select 1)",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        # Query errors are PostgreSQL's to report, as Redshift's SQL parser reports them.
        "",
        "select 1; select 2",
        "select 'unterminated",
    ],
)
def test_query_passed_through(select: str) -> None:
    assert parse_unload(f"UNLOAD ({quote_literal(select)}) TO 's3://b/p' IAM_ROLE default").select == select


@pytest.mark.parametrize(
    ("to", "bucket", "prefix"),
    [
        ("s3://bucket/prefix/", "bucket", "prefix/"),
        ("s3://my.bucket-1/a/b/venue_", "my.bucket-1", "a/b/venue_"),
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
        ("s3://b/p/", "b", "p/"),
    ],
)
def test_to(to: str, bucket: str, prefix: str) -> None:
    command = parse_unload(f"UNLOAD ('select 1') TO {quote_literal(to)} IAM_ROLE default")
    assert (command.to, command.bucket, command.prefix) == (to, bucket, prefix)


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("https://bucket/prefix", "TO must be an S3 location"),
        ("S3://bucket/prefix", "TO must be an S3 location"),
        ("bucket/prefix", "TO must be an S3 location"),
        ("s3://", "TO has no bucket"),
        ("s3:///prefix", "TO has no bucket"),
    ],
)
def test_to_refused(to: str, message: str) -> None:
    assert message in refusal(f"UNLOAD ('select 1') TO {quote_literal(to)} IAM_ROLE default")


# -- authorization ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "kind"),
    [
        ("IAM_ROLE default", "iam_role"),
        ("iam_role DEFAULT", "iam_role"),
        ("IAM_ROLE 'default'", "iam_role"),
        (f"IAM_ROLE '{ARN}'", "iam_role"),
        (f"IAM_ROLE '{ARN},{ARN2}'", "iam_role"),
        (f"CREDENTIALS 'aws_iam_role={ARN}'", "credentials"),
        (f"with credentials as 'aws_iam_role={ARN},{ARN2}'", "credentials"),
        (f"CREDENTIALS 'aws_access_key_id={KEY_ID};aws_secret_access_key={SECRET}'", "credentials"),
        (
            f"CREDENTIALS 'aws_access_key_id={KEY_ID};aws_secret_access_key={SECRET};token={TOKEN}'",
            "credentials",
        ),
        (f"WITH CREDENTIALS 'AWS_ACCESS_KEY_ID={KEY_ID};AWS_SECRET_ACCESS_KEY={SECRET};'", "credentials"),
        (f"ACCESS_KEY_ID '{KEY_ID}' SECRET_ACCESS_KEY '{SECRET}'", "keys"),
        (f"secret_access_key '{SECRET}' access_key_id '{KEY_ID}' session_token '{TOKEN}'", "keys"),
        ("GZIP IAM_ROLE default HEADER", "iam_role"),
    ],
)
def test_authorization(auth: str, kind: str) -> None:
    assert parse_unload(f"{HEAD} {auth}").auth == kind


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("", "no authorization: add IAM_ROLE default"),
        ("GZIP", "no authorization"),
        (f"IAM_ROLE default ACCESS_KEY_ID '{KEY_ID}' SECRET_ACCESS_KEY '{SECRET}'", "IAM_ROLE cannot be"),
        (f"IAM_ROLE default SESSION_TOKEN '{TOKEN}'", "IAM_ROLE cannot be used with SESSION_TOKEN"),
        (f"CREDENTIALS 'aws_iam_role={ARN}' IAM_ROLE default", "IAM_ROLE cannot be used with CREDENTIALS"),
        (
            f"CREDENTIALS 'aws_iam_role={ARN}' ACCESS_KEY_ID '{KEY_ID}' SECRET_ACCESS_KEY '{SECRET}'",
            "CREDENTIALS cannot be used with ACCESS_KEY_ID or SECRET_ACCESS_KEY",
        ),
        (f"ACCESS_KEY_ID '{KEY_ID}'", "ACCESS_KEY_ID also needs SECRET_ACCESS_KEY"),
        (f"SECRET_ACCESS_KEY '{SECRET}'", "SECRET_ACCESS_KEY also needs ACCESS_KEY_ID"),
        (f"SESSION_TOKEN '{TOKEN}'", "SESSION_TOKEN also needs ACCESS_KEY_ID and SECRET_ACCESS_KEY"),
        (f"ACCESS_KEY_ID '' SECRET_ACCESS_KEY '{SECRET}'", "ACCESS_KEY_ID must not be empty"),
        (f"ACCESS_KEY_ID '{KEY_ID}' SECRET_ACCESS_KEY ''", "SECRET_ACCESS_KEY must not be empty"),
        ("IAM_ROLE default IAM_ROLE default", "IAM_ROLE is given more than once"),
        (f"IAM_ROLE {ARN}", "IAM_ROLE must be followed by default or a quoted role ARN"),
        ("IAM_ROLE", "IAM_ROLE must be followed by default or a quoted role ARN"),
        ("IAM_ROLE 'arn:aws:iam::123:role/R'", "IAM_ROLE must be default or role ARNs"),
        ("IAM_ROLE ''", "IAM_ROLE must be default or role ARNs"),
        (f"IAM_ROLE '{ARN}, {ARN2}'", "IAM_ROLE must be default or role ARNs"),
        (f"IAM_ROLE '{','.join([ARN] * 11)}'", "at most 10 roles"),
        ("WITH IAM_ROLE default", "WITH must be followed by CREDENTIALS"),
        ("CREDENTIALS 'aws_iam_role=nonsense'", "aws_iam_role in CREDENTIALS must be default or role ARNs"),
        (f"CREDENTIALS 'aws_access_key_id={KEY_ID}'", "CREDENTIALS must be 'aws_iam_role=<role-arn>' or"),
        (f"CREDENTIALS 'aws_secret_access_key={SECRET}'", "CREDENTIALS must be"),
        (f"CREDENTIALS 'aws_access_key_id={KEY_ID};aws_secret_access_key=S;extra=1'", "CREDENTIALS must be"),
        (f"CREDENTIALS 'aws_access_key_id={KEY_ID};{SECRET}'", "CREDENTIALS must be"),
        (f"CREDENTIALS 'aws_access_key_id={KEY_ID};aws_access_key_id={KEY_ID}'", "CREDENTIALS must be"),
        (f"CREDENTIALS 'aws_iam_role={ARN};aws_access_key_id={KEY_ID}'", "CREDENTIALS must be"),
        ("CREDENTIALS ''", "CREDENTIALS must be"),
        (f"CREDENTIALS {KEY_ID}", "expected a quoted string after CREDENTIALS"),
        (
            f"ACCESS_KEY_ID '{KEY_ID}' {SECRET}",
            "a word at position 90 (not shown: the statement carries keys)",
        ),
        (f"ACCESS_KEY_ID '{KEY_ID}' '{SECRET}'", "syntax error at or near a quoted string (position 90)"),
        (f"ACCESS_KEY_ID '{KEY_ID}' SECRET_ACCESS_KEY {SECRET}", "expected a quoted string after SECRET_ACC"),
    ],
)
def test_authorization_refused(auth: str, message: str) -> None:
    assert message in refusal(f"{HEAD} {auth}")


# Statements split into pieces so that one mutation moves, drops, repeats or unquotes one piece.
SECRET_PIECES = [
    "UNLOAD",
    "('select 1')",
    "TO",
    "'s3://b/p'",
    "ACCESS_KEY_ID",
    f"'{KEY_ID}'",
    "SECRET_ACCESS_KEY",
    f"'{SECRET}'",
    "SESSION_TOKEN",
    f"'{TOKEN}'",
    "WITH",
    "CREDENTIALS",
    "AS",
    f"'aws_access_key_id={KEY_ID};aws_secret_access_key={SECRET};token={TOKEN}'",
    "DELIMITER",
    "','",
    "MAXFILESIZE",
    "100",
]
INSERTS = ["IAM_ROLE", "IAM_ROLE default", "DELIMITER", "TO", "REGION", "NULL AS", "(", "'", ";", "CSV", "x"]


@st.composite
def mutated_statements(draw: st.DrawFn) -> str:
    pieces = list(SECRET_PIECES)
    # At most three mutations leave at least one of the four key keywords, so the parser can tell
    # that the statement carries secrets (a bare secret with no keyword at all looks like a typo).
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(pieces) - 1))
        kind = draw(st.sampled_from(["drop", "repeat", "swap", "unquote", "insert"]))
        if kind == "drop":
            del pieces[i]
        elif kind == "repeat":
            pieces.insert(i, pieces[i])
        elif kind == "swap" and i + 1 < len(pieces):
            pieces[i], pieces[i + 1] = pieces[i + 1], pieces[i]
        elif kind == "unquote":
            pieces[i] = pieces[i].strip("'")
        elif kind == "insert":
            pieces.insert(i, draw(st.sampled_from(INSERTS)))
    return " ".join(pieces)


@given(mutated_statements())
@settings(max_examples=300)
def test_errors_never_contain_keys_or_secrets(sql: str) -> None:
    try:
        parse_unload(sql)
    except UnloadError as exc:
        message = str(exc)
        for secret in (KEY_ID, SECRET, TOKEN, *SECRET.split("/"), *TOKEN.split("/")):
            assert secret not in message, message


def test_a_keyword_swallowed_by_a_shifted_quote_still_hides_the_keys() -> None:
    """Found by the property above: a stray quote after TO puts ACCESS_KEY_ID inside a string, and the
    key that followed it stands unquoted where an option keyword belongs."""
    sql = f"UNLOAD ('select 1') TO ' ACCESS_KEY_ID '{KEY_ID}' SECRET_ACCESS_KEY ' DELIMITER ','"
    with pytest.raises(UnloadError) as refused:
        parse_unload(sql)
    assert KEY_ID not in str(refused.value) and "not shown" in str(refused.value)


def test_command_holds_no_secret() -> None:
    auth = f"ACCESS_KEY_ID '{KEY_ID}' SECRET_ACCESS_KEY '{SECRET}' SESSION_TOKEN '{TOKEN}'"
    command = parse_unload(f"{HEAD} {auth}")
    assert SECRET not in repr(command) and TOKEN not in repr(command) and KEY_ID not in repr(command)


# -- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fields"),
    [
        ("FORMAT CSV", {"format": "csv"}),
        ("format as csv", {"format": "csv"}),
        ("Csv", {"format": "csv"}),
        ("FORMAT AS PARQUET", {"format": "parquet"}),
        ("parquet", {"format": "parquet"}),
        ("FORMAT json", {"format": "json"}),
        ("JSON", {"format": "json"}),
        ('PARTITION BY (Region, "Sub Region")', {"partition_by": ("region", "Sub Region")}),
        ("partition by (d) include", {"partition_by": ("d",), "partition_include": True}),
        ("MANIFEST", {"manifest": True}),
        ("manifest verbose", {"manifest": True, "manifest_verbose": True}),
        ("HEADER", {"header": True}),
        ("DELIMITER ','", {"delimiter": ","}),
        ("delimiter as '\\t'", {"delimiter": "\t"}),
        ("DELIMITER AS ''''", {"delimiter": "'"}),
        ("FIXEDWIDTH '0:3,1:100,2:30'", {"fixedwidth": "0:3,1:100,2:30"}),
        ("fixedwidth as 'id:5,name:40'", {"fixedwidth": "id:5,name:40"}),
        ("ENCRYPTED", {"encrypted": True}),
        ("encrypted auto", {"encrypted": True, "encrypted_auto": True}),
        ("ENCRYPTED KMS_KEY_ID 'alias/x'", {"encrypted": True, "kms_key_id": "alias/x"}),
        ("KMS_KEY_ID 'k1' ENCRYPTED AUTO", {"encrypted": True, "encrypted_auto": True, "kms_key_id": "k1"}),
        ("BZIP2", {"compression": "bzip2"}),
        ("gzip", {"compression": "gzip"}),
        ("Zstd", {"compression": "zstd"}),
        ("ADDQUOTES", {"addquotes": True}),
        ("NULL 'NA'", {"null_as": "NA"}),
        ("null as ''", {"null_as": ""}),
        ("ESCAPE", {"escape": True}),
        ("ALLOWOVERWRITE", {"allowoverwrite": True}),
        ("cleanpath", {"cleanpath": True}),
        ("PARALLEL", {"parallel": True}),
        ("PARALLEL ON", {"parallel": True}),
        ("parallel true", {"parallel": True}),
        ("PARALLEL OFF", {"parallel": False}),
        ("parallel False", {"parallel": False}),
        ("PARALLEL OFF GZIP", {"parallel": False, "compression": "gzip"}),
        ("PARALLEL GZIP", {"parallel": True, "compression": "gzip"}),
        ("PARQUET ROWGROUPSIZE 64 MB", {"format": "parquet", "rowgroupsize": 64 * MB}),
        ("rowgroupsize as 128mb parquet", {"format": "parquet", "rowgroupsize": 128 * MB}),
        ("PARQUET ROWGROUPSIZE 32", {"format": "parquet", "rowgroupsize": 32 * MB}),
        ("REGION 'us-west-2'", {"region": "us-west-2"}),
        ("region as 'eu-central-1'", {"region": "eu-central-1"}),
        ("EXTENSION 'csv'", {"extension": "csv"}),
        (
            "cleanpath Gzip manifest VERBOSE Header csv delimiter as ';' null as '\\\\N' Parallel off",
            {
                "cleanpath": True,
                "compression": "gzip",
                "manifest": True,
                "manifest_verbose": True,
                "header": True,
                "format": "csv",
                "delimiter": ";",
                "null_as": "\\N",
                "parallel": False,
            },
        ),
    ],
)
def test_options(options: str, fields: dict[str, Any]) -> None:
    command = parse_unload(f"{BASE} {options}")
    expected = UnloadCommand(select="select * from t", to="s3://bucket/prefix/", auth="iam_role", **fields)
    assert command == expected
    # Options may come before the authorization, too.
    assert parse_unload(f"{HEAD} {options} IAM_ROLE default") == expected


@pytest.mark.parametrize(
    ("size", "nbytes"),
    [
        ("100MB", 100 * MB),
        ("100 mb", 100 * MB),
        ("100 Mb", 100 * MB),
        ("AS 100 MB", 100 * MB),
        ("as 100MB", 100 * MB),
        ("100", 100 * MB),
        ("5", 5 * MB),
        ("1.5 GB", int(1.5 * GB)),
        ("1.5GB", int(1.5 * GB)),
        ("0.5 gb", GB // 2),
        ("2.75 MB".replace("2.75", "5.5"), int(5.5 * MB)),
        ("6.2GB", MAXFILESIZE_MAX),
        ("6.2 GB", MAXFILESIZE_MAX),
        ("6348.8 MB", MAXFILESIZE_MAX),
        ("1 GB", GB),
    ],
)
def test_maxfilesize(size: str, nbytes: int) -> None:
    assert parse_unload(f"{BASE} MAXFILESIZE {size}").maxfilesize == nbytes


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("4 MB", "MAXFILESIZE must be between 5 MB and 6.2 GB (got 4 MB)"),
        ("4.99", "MAXFILESIZE must be between 5 MB and 6.2 GB (got 4.99 MB)"),
        ("0", "MAXFILESIZE must be between 5 MB and 6.2 GB"),
        ("6.3 GB", "MAXFILESIZE must be between 5 MB and 6.2 GB (got 6.3 GB)"),
        ("6349 MB", "MAXFILESIZE must be between 5 MB and 6.2 GB"),
        ("99999999999999999999999 GB", "MAXFILESIZE must be between 5 MB and 6.2 GB"),
        ("100 KB", "MAXFILESIZE takes MB or GB, not KB"),
        ("1 TB", "MAXFILESIZE takes MB or GB, not TB"),
        ("'100 MB'", "MAXFILESIZE must be followed by a size such as 100 MB"),
        ("1e3", "MAXFILESIZE must be followed by a size"),
        ("-10 MB", "MAXFILESIZE must be followed by a size"),
        ("", "MAXFILESIZE must be followed by a size"),
        ("100 MB MAXFILESIZE 200 MB", "MAXFILESIZE is given more than once"),
        ("100 MB GB", 'syntax error at or near "GB"'),
    ],
)
def test_maxfilesize_refused(size: str, message: str) -> None:
    assert message in refusal(f"{BASE} MAXFILESIZE {size}")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # The spec's "Illegal combinations", one by one.
        ("CSV FIXEDWIDTH '0:3'", "CSV is not compatible with FIXEDWIDTH"),
        ("CSV ADDQUOTES", "CSV is not compatible with ADDQUOTES"),
        ("ESCAPE FORMAT AS CSV", "CSV is not compatible with ESCAPE"),
        ("PARQUET DELIMITER ','", "PARQUET is not compatible with DELIMITER"),
        ("PARQUET FIXEDWIDTH '0:3'", "PARQUET is not compatible with FIXEDWIDTH"),
        ("PARQUET ADDQUOTES", "PARQUET is not compatible with ADDQUOTES"),
        ("PARQUET ESCAPE", "PARQUET is not compatible with ESCAPE"),
        ("PARQUET NULL AS 'x'", "PARQUET is not compatible with NULL AS"),
        ("PARQUET HEADER", "PARQUET is not compatible with HEADER"),
        ("PARQUET GZIP", "PARQUET is not compatible with GZIP"),
        ("BZIP2 FORMAT PARQUET", "PARQUET is not compatible with BZIP2"),
        ("PARQUET ZSTD", "PARQUET is not compatible with ZSTD"),
        ("JSON DELIMITER ','", "JSON is not compatible with DELIMITER"),
        ("JSON HEADER", "JSON is not compatible with HEADER"),
        ("JSON FIXEDWIDTH '0:3'", "JSON is not compatible with FIXEDWIDTH"),
        ("JSON ADDQUOTES", "JSON is not compatible with ADDQUOTES"),
        ("JSON ESCAPE", "JSON is not compatible with ESCAPE"),
        ("JSON NULL 'x'", "JSON is not compatible with NULL AS"),
        ("HEADER FIXEDWIDTH '0:3'", "FIXEDWIDTH is not compatible with HEADER"),
        ("FIXEDWIDTH '0:3' DELIMITER ','", "FIXEDWIDTH is not compatible with DELIMITER"),
        ("CLEANPATH ALLOWOVERWRITE", "CLEANPATH is not compatible with ALLOWOVERWRITE"),
        ("KMS_KEY_ID 'k'", "KMS_KEY_ID requires ENCRYPTED"),
        ("VERBOSE MANIFEST", "VERBOSE requires MANIFEST"),
        ("VERBOSE", "VERBOSE requires MANIFEST: write MANIFEST VERBOSE"),
        ("ROWGROUPSIZE 64 MB", "ROWGROUPSIZE requires FORMAT PARQUET"),
        ("CSV ROWGROUPSIZE 64 MB", "ROWGROUPSIZE requires FORMAT PARQUET"),
        # ... plus what the brief adds.
        ("PARQUET ROWGROUPSIZE 31 MB", "ROWGROUPSIZE must be between 32 MB and 128 MB (got 31 MB)"),
        ("PARQUET ROWGROUPSIZE 1 GB", "ROWGROUPSIZE must be between 32 MB and 128 MB (got 1 GB)"),
        ("GZIP ZSTD", "only one compression may be given, found GZIP and ZSTD"),
        ("BZIP2 GZIP", "only one compression may be given, found BZIP2 and GZIP"),
        ("CSV JSON", "only one format may be given, found CSV and JSON"),
        ("FORMAT PARQUET FORMAT CSV", "only one format may be given, found PARQUET and CSV"),
        # Duplicates.
        ("CSV FORMAT AS CSV", "CSV is given more than once"),
        ("GZIP GZIP", "GZIP is given more than once"),
        ("HEADER header", "HEADER is given more than once"),
        ("MANIFEST MANIFEST VERBOSE", "MANIFEST is given more than once"),
        ("NULL AS 'a' NULL 'b'", "NULL AS is given more than once"),
        ("PARALLEL OFF PARALLEL ON", "PARALLEL is given more than once"),
        ("PARTITION BY (a) PARTITION BY (b)", "PARTITION BY is given more than once"),
        ("REGION 'a' REGION 'b'", "REGION is given more than once"),
        # Malformed options.
        ("FORMAT", "FORMAT must be followed by CSV, PARQUET or JSON, found the end of the statement"),
        ("FORMAT AS TEXT", 'FORMAT must be followed by CSV, PARQUET or JSON, found "TEXT"'),
        ("DELIMITER", "expected a quoted string after DELIMITER, found the end of the statement"),
        ("DELIMITER ,", 'expected a quoted string after DELIMITER, found ","'),
        ("DELIMITER '||'", "DELIMITER must be a single ASCII character"),
        ("DELIMITER ''", "DELIMITER must be a single ASCII character"),
        ("DELIMITER '§'", "DELIMITER must be a single ASCII character"),
        ("FIXEDWIDTH 'a,b'", "FIXEDWIDTH must list 'column:width' pairs"),
        ("FIXEDWIDTH '0:x'", "FIXEDWIDTH must list 'column:width' pairs"),
        ("NULL", "expected a quoted string after NULL AS"),
        ("KMS_KEY_ID AS 'k' ENCRYPTED", 'expected a quoted string after KMS_KEY_ID, found "AS"'),
        ("ENCRYPTED KMS_KEY_ID ''", "KMS_KEY_ID must not be empty"),
        ("REGION ''", "REGION must not be empty"),
        ("EXTENSION ''", "EXTENSION must not be empty"),
        ("PARTITION (a)", "PARTITION must be followed by BY"),
        ("PARTITION BY a", "PARTITION BY must be followed by (column [, ...])"),
        ("PARTITION BY ()", "PARTITION BY expects column names"),
        ("PARTITION BY (a,)", "PARTITION BY expects column names"),
        ("PARTITION BY (a b)", "PARTITION BY column list must end with ')'"),
        ("PARTITION BY (a, A)", "PARTITION BY lists a column more than once"),
        ('PARTITION BY ("")', "PARTITION BY expects column names"),
        ("PARALLEL 'off'", "syntax error at or near a quoted string"),
    ],
)
def test_options_refused(options: str, message: str) -> None:
    assert message in refusal(f"{BASE} {options}")
