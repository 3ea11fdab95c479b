"""Redshift SQL text rules shared by the statement builder and the emulator's parser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["word", "number", "string", "ident", "punct"]

# PostgreSQL's lexer (which Redshift inherits) treats every non-ASCII character as an identifier
# character, and `$` may continue (not start) an identifier: `a$$b` is one word, not a dollar quote.
_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
# Literal bodies are skipped by jumping between special characters, so a 16 MB select stays fast.
_QUOTE_OR_BACKSLASH = re.compile(r"['\\]")
_COMMENT_MARK = re.compile(r"/\*|\*/")
_LINE_END = re.compile(r"[\n\r]")
_ESCAPE = re.compile(r"''|\\(.)", re.DOTALL)
# AWS documents `DELIMITER AS '\t'` for a tab, so the C escapes are honoured; any other escaped
# character stands for itself (`\'` is `'`, `\\` is `\`).
_C_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def quote_literal(text: str) -> str:
    """`text` as a Redshift string literal: `'` doubled and `\\` doubled (backslash is an escape there)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class SqlTextError(ValueError):
    """The text ends inside a string literal, quoted identifier, dollar quote or block comment."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    value: str  # string literals and quoted identifiers unescaped; everything else exactly as written
    pos: int  # offset of the token's first character


def tokenize(sql: str) -> Iterator[Token]:
    """The tokens of `sql` under Redshift's lexical rules, skipping whitespace and comments.

    Single-quoted literals use `''`, `\\'` and backslash escapes; `$tag$...$tag$` bodies are verbatim;
    `"..."` identifiers use `""`; `/* */` comments nest as in PostgreSQL. Operators come one character
    per `punct` token. Tokens are produced lazily; an unterminated literal or comment raises
    `SqlTextError` only when the scan reaches it, after every token before it has been yielded.
    """
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if m := _SPACE.match(sql, i):
            i = m.end()
        elif sql.startswith("--", i):
            m = _LINE_END.search(sql, i)
            i = m.end() if m else n
        elif sql.startswith("/*", i):
            i = _block_comment_end(sql, i)
        elif ch == "'":
            end = _literal_end(sql, i)
            yield Token("string", _unescape(sql[i + 1 : end - 1]), i)
            i = end
        elif ch == '"':
            end = _identifier_end(sql, i)
            yield Token("ident", sql[i + 1 : end - 1].replace('""', '"'), i)
            i = end
        elif ch == "$" and (m := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(m.group(), m.end())
            if close < 0:
                raise SqlTextError("unterminated dollar-quoted string", i)
            yield Token("string", sql[m.end() : close], i)
            i = close + len(m.group())
        elif m := _WORD.match(sql, i) or _NUMBER.match(sql, i):
            yield Token("word" if m.re is _WORD else "number", m.group(), i)
            i = m.end()
        else:
            yield Token("punct", ch, i)
            i += 1


def _literal_end(sql: str, start: int) -> int:
    i = start + 1
    while m := _QUOTE_OR_BACKSLASH.search(sql, i):
        j = m.start()
        if sql[j] == "\\" or sql.startswith("''", j):
            i = j + 2
        else:
            return j + 1
    raise SqlTextError("unterminated quoted string", start)


def _identifier_end(sql: str, start: int) -> int:
    i = start + 1
    while (j := sql.find('"', i)) >= 0:
        if not sql.startswith('""', j):
            return j + 1
        i = j + 2
    raise SqlTextError("unterminated quoted identifier", start)


def _block_comment_end(sql: str, start: int) -> int:
    depth, i = 0, start
    while m := _COMMENT_MARK.search(sql, i):
        depth += 1 if m.group() == "/*" else -1
        i = m.end()
        if depth == 0:
            return i
    raise SqlTextError("unterminated /* comment", start)


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        escaped = m.group(1)
        return "'" if escaped is None else _C_ESCAPES.get(escaped, escaped)

    return _ESCAPE.sub(one, body)


def has_outer_limit(select: str) -> bool:
    """Whether the top-level query of `select` has a LIMIT (or FETCH FIRST/NEXT) clause.

    Redshift refuses such a query inside UNLOAD, while a LIMIT nested in parentheses (a subquery,
    a CTE body, a parenthesised set-operation branch) is fine. LIMIT inside string literals
    (backslash escapes included), dollar quotes, quoted identifiers and comments is ignored, and so
    is `limit` used as a column label (`t.limit`, `x AS limit`). Never raises: text after an
    unterminated literal or comment is not SQL, so only what comes before it is judged.
    """
    depth = 0
    prev: Token | None = None
    try:
        for tok in tokenize(select):
            if tok.kind == "punct" and tok.value in ("(", "["):
                depth += 1
            elif tok.kind == "punct" and tok.value in (")", "]"):
                depth = max(depth - 1, 0)
            elif tok.kind == "word" and depth == 0 and not _is_label_position(prev):
                word = tok.value.upper()
                if word == "LIMIT":
                    return True
                if word in ("FIRST", "NEXT") and _is_word(prev, "FETCH"):
                    return True
            prev = tok
    except SqlTextError:
        pass
    return False


def _is_word(tok: Token | None, word: str) -> bool:
    return tok is not None and tok.kind == "word" and tok.value.upper() == word


def _is_label_position(prev: Token | None) -> bool:
    # After `.` or AS, PostgreSQL's grammar accepts reserved words as plain names.
    return _is_word(prev, "AS") or (prev is not None and prev.kind == "punct" and prev.value == ".")
