"""Parse one Redshift UNLOAD statement into an `UnloadCommand` (pure: no I/O).

Every `UnloadError` message goes back to the client verbatim. Messages name keywords and numbers but
never echo a quoted value: a value in the wrong place may be a secret key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from unload_assets.statement.sqltext import SqlTextError, Token, tokenize
from unload_assets_local.emulator.command import (
    MAXFILESIZE_MAX,
    MAXFILESIZE_MIN,
    MB,
    ROWGROUPSIZE_MAX,
    ROWGROUPSIZE_MIN,
    UnloadCommand,
    UnloadError,
)
from unload_assets_local.emulator.rules import (
    auth_kind,
    check_combinations,
    check_query,
    check_to,
    check_values,
)

_FORMATS = {"CSV": "csv", "PARQUET": "parquet", "JSON": "json"}
_COMPRESSIONS = {"GZIP": "gzip", "BZIP2": "bzip2", "ZSTD": "zstd"}
_FLAGS = {
    "HEADER": "header",
    "ADDQUOTES": "addquotes",
    "ESCAPE": "escape",
    "ALLOWOVERWRITE": "allowoverwrite",
    "CLEANPATH": "cleanpath",
}
# keyword -> (field, name used in messages, whether the spec allows an optional AS)
_STRING_OPTIONS = {
    "DELIMITER": ("delimiter", "DELIMITER", True),
    "FIXEDWIDTH": ("fixedwidth", "FIXEDWIDTH", True),
    "NULL": ("null_as", "NULL AS", True),
    "REGION": ("region", "REGION", True),
    "KMS_KEY_ID": ("kms_key_id", "KMS_KEY_ID", False),
    "EXTENSION": ("extension", "EXTENSION", False),
}
_SIZES = {
    "MAXFILESIZE": ("maxfilesize", MAXFILESIZE_MIN, MAXFILESIZE_MAX, "5 MB and 6.2 GB"),
    "ROWGROUPSIZE": ("rowgroupsize", ROWGROUPSIZE_MIN, ROWGROUPSIZE_MAX, "32 MB and 128 MB"),
}
_UNITS = {"MB": MB, "GB": 1024 * MB}
_NOT_UNITS = frozenset({"B", "BYTES", "K", "KB", "KIB", "M", "MIB", "G", "GIB", "T", "TB", "TIB"})
_PARALLEL = {"ON": True, "TRUE": True, "OFF": False, "FALSE": False}
_SECRET_KEYWORDS = frozenset({"CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def is_unload(sql: str) -> bool:
    """Whether `sql`, after leading whitespace and comments, starts with the keyword UNLOAD."""
    try:
        first = next(tokenize(sql), None)
    except SqlTextError:
        return False
    return first is not None and first.kind == "word" and first.value.upper() == "UNLOAD"


def split_statements(sql: str) -> list[str]:
    """The statements of a simple Query, split at top-level `;` (not inside literals, quoted names,
    dollar quotes or comments); empty ones left out. Unterminated text stays one statement, for the
    server to refuse."""
    try:
        cuts = [tok.pos for tok in tokenize(sql) if tok.kind == "punct" and tok.value == ";"]
    except SqlTextError:
        return [sql]
    pieces, start = [], 0
    for cut in [*cuts, len(sql)]:
        piece = sql[start:cut]
        if any(True for _ in tokenize(piece)):
            pieces.append(piece.strip())
        start = cut + 1
    return pieces


def holds_unload(sql: str) -> bool:
    """Whether a statement of a simple Query is one the emulator runs itself: an UNLOAD, or a COPY from
    S3 (a cheap look for the words first)."""
    lowered = sql.lower()
    if "unload" not in lowered and "copy" not in lowered:
        return False
    return emulated(sql) or any(emulated(piece) for piece in split_statements(sql))


def emulated(statement: str) -> bool:
    from unload_assets_local.emulator.copy_command import is_copy_from_s3

    return is_unload(statement) or is_copy_from_s3(statement)


TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})


def first_word(sql: str) -> str:
    try:
        first = next(tokenize(sql), None)
    except SqlTextError:
        return ""
    return first.value.upper() if first is not None and first.kind == "word" else ""


def parse_unload(sql: str) -> UnloadCommand:
    """The validated form of one UNLOAD statement; `UnloadError` for anything Redshift refuses."""
    try:
        tokens = list(tokenize(sql))
    except SqlTextError as exc:
        raise UnloadError(f"UNLOAD: {exc} at position {exc.pos + 1}") from None
    return _Parser(tokens).parse()


def _error(message: str) -> UnloadError:
    return UnloadError(f"UNLOAD: {message}")


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.fields: dict[str, Any] = {}
        self.claimed: dict[str, str] = {}  # option group -> keyword that claimed it
        self.auth: dict[str, str] = {}
        # With keys in the statement, a stray word may be a secret that lost its keyword and quotes.
        self.redact = any(tok.kind == "word" and tok.value.upper() in _SECRET_KEYWORDS for tok in tokens)

    def parse(self) -> UnloadCommand:
        if self.word("UNLOAD") is None:
            raise _error("not an UNLOAD statement")
        self.punct("(", "expected ('select-statement') after UNLOAD")
        select = self.string("UNLOAD (", expected="the query as a quoted string")
        self.punct(")", "the quoted query must be followed by ')'")
        if self.word("TO") is None:
            raise _error(f"expected TO 's3://bucket/prefix' after the query, found {self.near(self.peek())}")
        to = self.string("TO")
        while (tok := self.take()) is not None and not (tok.kind == "punct" and tok.value == ";"):
            if tok.kind != "word":
                raise _error(f"syntax error at or near {self.near(tok)}: expected an option keyword")
            self.option(tok)
        if self.peek() is not None:
            raise _error("only one statement may be sent at a time; found more after ';'")

        check_to(to)
        auth = auth_kind(self.auth)
        check_values(self.fields)
        check_combinations(set(self.claimed.values()))
        check_query(select)
        return UnloadCommand(select=select, to=to, auth=auth, **self.fields)

    def option(self, tok: Token) -> None:
        key = tok.value.upper()
        if key in _FLAGS:
            self.claim(key)
            self.fields[_FLAGS[key]] = True
        elif key in _FORMATS:
            self.set_format(key)
        elif key == "FORMAT":
            self.word("AS")
            fmt = self.word(*_FORMATS)
            if fmt is None:
                raise _error(
                    f"FORMAT must be followed by CSV, PARQUET or JSON, found {self.near(self.peek())}"
                )
            self.set_format(fmt)
        elif key in _COMPRESSIONS:
            self.claim(key, group="compression")
            self.fields["compression"] = _COMPRESSIONS[key]
        elif key in _STRING_OPTIONS:
            field, name, takes_as = _STRING_OPTIONS[key]
            self.claim(name)
            if takes_as:
                self.word("AS")
            self.fields[field] = self.string(name)
        elif key in _SIZES:
            self.size_option(key)
        elif key == "MANIFEST":
            self.claim(key)
            self.fields["manifest"] = True
            self.fields["manifest_verbose"] = self.word("VERBOSE") is not None
        elif key == "VERBOSE":
            raise _error("VERBOSE requires MANIFEST: write MANIFEST VERBOSE")
        elif key == "ENCRYPTED":
            self.claim(key)
            self.fields["encrypted"] = True
            self.fields["encrypted_auto"] = self.word("AUTO") is not None
        elif key == "PARALLEL":
            self.claim(key)
            setting = self.word(*_PARALLEL)
            self.fields["parallel"] = True if setting is None else _PARALLEL[setting]
        elif key == "PARTITION":
            self.partition_by()
        elif key in ("IAM_ROLE", "WITH") or key in _SECRET_KEYWORDS:
            self.authorization(key)
        else:
            raise _error(f"syntax error at or near {self.near(tok)}: not an UNLOAD option")

    def set_format(self, fmt: str) -> None:
        self.claim(fmt, group="format")
        self.fields["format"] = _FORMATS[fmt]

    def size_option(self, key: str) -> None:
        field, low, high, bounds = _SIZES[key]
        self.claim(key)
        self.word("AS")
        tok = self.take()
        if tok is None or tok.kind != "number" or "e" in tok.value.lower():
            raise _error(f"{key} must be followed by a size such as 100 MB or 1 GB, found {self.near(tok)}")
        unit = self.word(*_UNITS)
        after = self.peek()
        if unit is None and after is not None and after.kind == "word" and after.value.upper() in _NOT_UNITS:
            raise _error(f"{key} takes MB or GB, not {after.value}")
        value = Decimal(tok.value)
        # Cap before converting: a huge literal must not become a huge int.
        size = int(value * _UNITS[unit or "MB"]) if value < 10**6 else high + 1
        if not low <= size <= high:
            raise _error(f"{key} must be between {bounds} (got {tok.value} {unit or 'MB'})")
        self.fields[field] = size

    def partition_by(self) -> None:
        self.claim("PARTITION BY")
        if self.word("BY") is None:
            raise _error("PARTITION must be followed by BY (column [, ...])")
        self.punct("(", "PARTITION BY must be followed by (column [, ...])")
        columns: list[str] = []
        while True:
            tok = self.take()
            if tok is not None and tok.kind == "word":
                # Unquoted identifiers fold to lower case, ASCII only, as in PostgreSQL.
                columns.append(tok.value.translate(_ASCII_LOWER))
            elif tok is not None and tok.kind == "ident" and tok.value:
                columns.append(tok.value)
            else:
                raise _error(f"PARTITION BY expects column names, found {self.near(tok)}")
            if self.punct_if(","):
                continue
            self.punct(")", "PARTITION BY column list must end with ')'")
            break
        if len(set(columns)) != len(columns):
            raise _error("PARTITION BY lists a column more than once")
        self.fields["partition_by"] = tuple(columns)
        self.fields["partition_include"] = self.word("INCLUDE") is not None

    def authorization(self, key: str) -> None:
        if key == "WITH":
            if self.word("CREDENTIALS") is None:
                raise _error(f"WITH must be followed by CREDENTIALS, found {self.near(self.peek())}")
            key = "CREDENTIALS"
        self.claim(key)
        if key == "IAM_ROLE":
            nxt = self.peek()
            if self.word("DEFAULT") is not None:
                self.auth[key] = "default"
            elif nxt is not None and nxt.kind == "string":
                self.auth[key] = self.string(key)
            else:
                raise _error("IAM_ROLE must be followed by default or a quoted role ARN")
            return
        if key == "CREDENTIALS":
            self.word("AS")
        self.auth[key] = self.string(key, secret=True)

    def claim(self, name: str, group: str | None = None) -> None:
        group = group or name
        earlier = self.claimed.get(group)
        if earlier == name:
            raise _error(f"{name} is given more than once")
        if earlier is not None:
            raise _error(f"only one {group} may be given, found {earlier} and {name}")
        self.claimed[group] = name

    def near(self, tok: Token | None) -> str:
        if tok is None:
            return "the end of the statement"
        if tok.kind == "string":
            return f"a quoted string (position {tok.pos + 1})"
        if tok.kind == "punct":
            return f'"{tok.value}"'
        if self.redact:
            return f"a word at position {tok.pos + 1} (not shown: the statement carries keys)"
        return f'"{tok.value}"' if tok.kind != "ident" else f'"{tok.value}" (a quoted identifier)'

    # -- token stream ------------------------------------------------------------------------------

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token | None:
        tok = self.peek()
        self.i += tok is not None
        return tok

    def word(self, *words: str) -> str | None:
        """Consume the next token if it is one of `words` (upper case); return it upper-cased."""
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.value.upper() in words:
            self.i += 1
            return tok.value.upper()
        return None

    def punct_if(self, char: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.value == char:
            self.i += 1
            return True
        return False

    def punct(self, char: str, message: str) -> None:
        if not self.punct_if(char):
            raise _error(f"{message}, found {self.near(self.peek())}")

    def string(self, after: str, *, secret: bool = False, expected: str = "a quoted string") -> str:
        tok = self.take()
        if tok is None or tok.kind != "string":
            # What stands where a secret belongs may be the secret itself, unquoted.
            found = "" if secret else f", found {self.near(tok)}"
            raise _error(f"expected {expected} after {after}{found}")
        return tok.value
