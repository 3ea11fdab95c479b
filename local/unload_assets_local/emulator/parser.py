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
from unload_assets_local.emulator.token_cursor import SECRET_KEYWORDS, TokenCursor

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
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def parse_unload(sql: str) -> UnloadCommand:
    """The validated form of one UNLOAD statement; `UnloadError` for anything Redshift refuses."""
    try:
        tokens = list(tokenize(sql))
    except SqlTextError as exc:
        raise UnloadError(f"UNLOAD: {exc} at position {exc.pos + 1}") from None
    return _Parser(tokens).parse()


def _error(message: str) -> UnloadError:
    return UnloadError(f"UNLOAD: {message}")


class _Parser(TokenCursor):
    def __init__(self, tokens: list[Token]) -> None:
        super().__init__(tokens)
        self.fields: dict[str, Any] = {}
        self.claimed: dict[str, str] = {}  # option group -> keyword that claimed it
        self.auth: dict[str, str] = {}

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
        elif key in ("IAM_ROLE", "WITH") or key in SECRET_KEYWORDS:
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
