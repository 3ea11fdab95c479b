"""Redshift SQL text rules: literal quoting, the tokenizer, and outer-LIMIT detection."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from unload_assets.statement.sqltext import SqlTextError, has_outer_limit, quote_literal, tokenize

# Text that stresses a SQL lexer: quotes, escapes, dollar quotes, comment markers, non-ASCII.
SQL_PIECES = ["'", "''", "\\", '"', "$$", "$a$", "--", "/*", "*/", "\n", "(", ")", ";", " ", "limit"]
sql_noise = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(SQL_PIECES), st.characters())).map("".join),
)


def values(sql: str) -> list[tuple[str, str]]:
    return [(tok.kind, tok.value) for tok in tokenize(sql)]


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("", "''"),
        ("O'Brien", "'O''Brien'"),
        ("c:\\tmp", "'c:\\\\tmp'"),
        ("\\'", "'\\\\'''"),
    ],
)
def test_quote_literal(text: str, literal: str) -> None:
    assert quote_literal(text) == literal


@given(sql_noise)
@settings(max_examples=300)
def test_quote_literal_round_trips_through_the_tokenizer(text: str) -> None:
    assert values(quote_literal(text)) == [("string", text)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("'it''s'", [("string", "it's")]),
        ("'it\\'s'", [("string", "it's")]),
        ("'a\\\\'", [("string", "a\\")]),
        ("'\\t|\\n|\\x'", [("string", "\t|\n|x")]),
        ("$$it's \\ $$", [("string", "it's \\ ")]),
        ("$q$ $$ $q$", [("string", " $$ ")]),
        ('"Quoted ""id"""', [("ident", 'Quoted "id"')]),
        ("a$$b $1", [("word", "a$$b"), ("punct", "$"), ("number", "1")]),
        ("100MB 1.5 .5", [("number", "100"), ("word", "MB"), ("number", "1.5"), ("number", ".5")]),
        ("x -- c ' \n y", [("word", "x"), ("word", "y")]),
        ("x /* a /* nested */ ' */ y", [("word", "x"), ("word", "y")]),
        ("ünïcode_naïve", [("word", "ünïcode_naïve")]),
        (
            "t.a::int",
            [
                ("word", "t"),
                ("punct", "."),
                ("word", "a"),
                ("punct", ":"),
                ("punct", ":"),
                ("word", "int"),
            ],
        ),
    ],
)
def test_tokenize(sql: str, expected: list[tuple[str, str]]) -> None:
    assert values(sql) == expected


@pytest.mark.parametrize("sql", ["x 'abc", "x 'ab\\'", 'x "id', "x $$ab", "x /* a /* b */"])
def test_tokenize_reports_unterminated_text_after_the_tokens_before_it(sql: str) -> None:
    seen = []
    with pytest.raises(SqlTextError) as info:
        seen.extend(tokenize(sql))
    assert [tok.value for tok in seen] == ["x"]
    assert info.value.pos == 2


OUTER_LIMIT = [
    "select * from t limit 10",
    "SELECT * FROM t ORDER BY 1 LiMiT 5;",
    "select * from (select * from t limit 5) x limit 10",
    "with a as (select 1 limit 1) select * from a limit 3",
    "select 'O''Brien', 'x' from t limit 1",
    "select 'it\\'s' from t limit 1",
    "select 'c:\\\\' from t limit 1",
    "select $$ ' $$ from t limit 1",
    "select 1 union all select 2 limit 1",
    "select * from t -- comment\nlimit 4",
    "select * from t /* comment */ limit 4",
    "select * from t\nlimit\n4",
    "select * from t offset 2 limit 4",
    "select * from t fetch first 3 rows only",
    "select * from t FETCH NEXT 1 ROW ONLY",
    "select * from t limit all",
    'select "limit" from t limit 2',
    "select ']' from t limit 1",
]

NO_OUTER_LIMIT = [
    "",
    "select * from t",
    "select * from (select * from t limit 10)",
    "select * from (select * from t limit 10) sub",
    "with a as (select * from t limit 5) select * from a",
    "with a as (select * from t limit 5), b as (select 1 limit 1) select * from a, b",
    "select 'limit 10' from t",
    "select 'O''Brien limit 1', 'x' from t",
    "select 'it\\'s limit 1' from t",
    "select 'a\\\\', ' limit 1' from t",
    "select $$ limit 1 $$ from t",
    "select $tag$ $$ limit 1 $tag$ from t",
    'select "limit" from t',
    'select "x"" limit 1" from t',
    "select t.limit from t",
    "select x as limit from t",
    "select * from t -- limit 1",
    "select * from t /* limit 1 */",
    "select * from t /* /* nested */ limit 1 */",
    "select limit_col, nolimit from limits",
    "select * from t where x in (select y from u order by y limit 3)",
    "(select * from t limit 1) union all (select * from u limit 1)",
    "select arr[1] from t",
    "select * from t where a = 'unterminated limit 1",
    "select * from t /* unterminated limit 1",
    "select * from t where a = $$unterminated limit 1",
    "select 'ok' from t where b = 'x\\",
    "select * from fetch_first",
    "select 'fetch' from t",
]


@pytest.mark.parametrize("sql", OUTER_LIMIT)
def test_has_outer_limit(sql: str) -> None:
    assert has_outer_limit(sql)


@pytest.mark.parametrize("sql", NO_OUTER_LIMIT)
def test_has_no_outer_limit(sql: str) -> None:
    assert not has_outer_limit(sql)


# The corpus minus its text that ends inside a literal or comment.
TERMINATED = [s for s in OUTER_LIMIT + NO_OUTER_LIMIT if "unterminated" not in s and s[-1:] != "\\"]


@pytest.mark.parametrize("sql", [s for s in TERMINATED if s])
def test_agrees_with_sqlglot_where_sqlglot_parses(sql: str) -> None:
    # sqlglot is an independent reading of the same grammar: a second opinion on the corpus.
    try:
        tree = sqlglot.parse_one(sql, dialect="redshift")
    except sqlglot.errors.ParseError:
        pytest.skip("sqlglot cannot parse this")
    if tree is None:
        pytest.skip("sqlglot found no statement")
    assert has_outer_limit(sql) == (tree.args.get("limit") is not None or tree.args.get("fetch") is not None)


@given(sql_noise)
@settings(max_examples=300)
def test_has_outer_limit_never_raises(text: str) -> None:
    has_outer_limit(text)


@pytest.mark.parametrize("sql", TERMINATED)
def test_a_query_wrapped_in_a_subquery_has_no_outer_limit(sql: str) -> None:
    assert not has_outer_limit(f"select * from ({sql.rstrip(';')}\n) AS wrapped")


@given(st.text(), st.sampled_from(["'", "$$", '"', "/*"]))
def test_limit_inside_quoted_text_is_never_outer(text: str, quote: str) -> None:
    closing = {"'": "'", "$$": "$$", '"': '"', "/*": "*/"}[quote]
    if quote == "'":
        body = quote_literal(text + " limit 1")
    elif closing in text + " limit 1" or (quote == "/*" and "/*" in text):
        return
    else:
        body = quote + text + " limit 1" + closing
    assert not has_outer_limit(f"select {body} from t")
