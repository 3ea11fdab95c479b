"""Parse one Redshift UNLOAD statement into an `UnloadCommand` (pure: no I/O): the walk through its
tokens, its options, and last the checks for what Redshift refuses in an UNLOAD that parses (option
values, combinations, authorization forms, an outer LIMIT).

Every `UnloadError` message goes back to the client verbatim. Messages name keywords and numbers but
never echo a quoted value, nor a word once the statement carries keys: a value in the wrong place may be
a secret key. The authorization rules (`auth_kind`) are COPY's too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from unload_assets.statement.sqltext import SqlTextError, Token, has_outer_limit, tokenize
from unload_assets_local.emulator.unload.command import (
    MAXFILESIZE_MAX,
    MAXFILESIZE_MIN,
    MB,
    ROWGROUPSIZE_MAX,
    ROWGROUPSIZE_MIN,
    AuthKind,
    UnloadCommand,
    UnloadError,
)

SECRET_KEYWORDS = frozenset({"CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"})
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=.@/-]+")
_MAX_CHAINED_ROLES = 10
_FIXEDWIDTH = re.compile(r"[^:,]+:[0-9]+(?:,[^:,]+:[0-9]+)*")
_AUTH_KEYWORDS = ("IAM_ROLE", "CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN")
_CREDENTIALS_FORMS = (
    "CREDENTIALS must be 'aws_iam_role=<role-arn>' or "
    "'aws_access_key_id=<key-id>;aws_secret_access_key=<secret>[;token=<session-token>]'"
)
_KEY_PAIRS_REQUIRED = frozenset({"aws_access_key_id", "aws_secret_access_key"})
_KEY_PAIRS_ALLOWED = _KEY_PAIRS_REQUIRED | {"token"}
# Options each format refuses, in the order the spec lists them.
_FORMAT_REFUSES = {
    "CSV": ("FIXEDWIDTH", "ADDQUOTES", "ESCAPE"),
    "PARQUET": (
        *("DELIMITER", "FIXEDWIDTH", "ADDQUOTES", "ESCAPE", "NULL AS", "HEADER"),
        *("GZIP", "BZIP2", "ZSTD"),
    ),
    "JSON": ("DELIMITER", "HEADER", "FIXEDWIDTH", "ADDQUOTES", "ESCAPE", "NULL AS"),
}
_PAIRS_REFUSED = (("FIXEDWIDTH", "HEADER"), ("FIXEDWIDTH", "DELIMITER"), ("CLEANPATH", "ALLOWOVERWRITE"))
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


# ---- the walk through the tokens ----------------------------------------------------------------


class TokenCursor:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        # With keys in the statement, a stray word may be a secret that lost its keyword and quotes. A
        # misplaced quote can swallow the keyword itself into a string: that counts too.
        self.redact = any(_names_a_secret(tok) for tok in tokens)

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


def _names_a_secret(tok: Token) -> bool:
    if tok.kind == "word":
        return tok.value.upper() in SECRET_KEYWORDS
    return tok.kind == "string" and any(keyword in tok.value.upper() for keyword in SECRET_KEYWORDS)


# ---- the statement ------------------------------------------------------------------------------


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


# ---- what Redshift refuses in an UNLOAD that parses ---------------------------------------------


def check_to(to: str) -> None:
    if not to.startswith("s3://"):
        raise _error("TO must be an S3 location: 's3://bucket/prefix'")
    bucket = to[len("s3://") :].split("/", 1)[0]
    # Bucket naming rules are S3's to enforce when the files are written.
    if not bucket:
        raise _error("TO has no bucket: write 's3://bucket/prefix'")


def auth_kind(auth: Mapping[str, str]) -> AuthKind:
    """Which authorization form `auth` (keyword -> value) uses, refusing missing or mixed forms."""
    given = [keyword for keyword in _AUTH_KEYWORDS if keyword in auth]
    if not given:
        raise _error(
            "no authorization: add IAM_ROLE default, IAM_ROLE '<role-arn>', CREDENTIALS '...' "
            "or ACCESS_KEY_ID '...' SECRET_ACCESS_KEY '...'"
        )
    first, others = given[0], given[1:]
    if first in ("IAM_ROLE", "CREDENTIALS") and others:
        raise _error(f"{first} cannot be used with {' or '.join(others)}")
    if first == "IAM_ROLE":
        _check_roles(auth[first], "IAM_ROLE")
        return "iam_role"
    if first == "CREDENTIALS":
        _check_credentials(auth[first])
        return "credentials"
    missing = [keyword for keyword in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY") if keyword not in auth]
    if missing:
        raise _error(f"{', '.join(given)} also needs {' and '.join(missing)}")
    empty = [keyword for keyword in given if not auth[keyword]]
    if empty:
        raise _error(f"{empty[0]} must not be empty")
    return "keys"


def _check_roles(value: str, where: str) -> None:
    if value.lower() == "default":
        return
    roles = value.split(",")
    if not all(_ROLE_ARN.fullmatch(role) for role in roles):
        raise _error(
            f"{where} must be default or role ARNs like 'arn:aws:iam::123456789012:role/MyRole' "
            "(chain roles with commas, no spaces)"
        )
    if len(roles) > _MAX_CHAINED_ROLES:
        raise _error(f"{where} may chain at most {_MAX_CHAINED_ROLES} roles")


def _check_credentials(value: str) -> None:
    pairs: dict[str, str] = {}
    for part in filter(None, value.split(";")):
        key, sep, item = part.partition("=")
        if not sep or not item or key.lower() in pairs:
            raise _error(_CREDENTIALS_FORMS)
        pairs[key.lower()] = item
    if set(pairs) == {"aws_iam_role"}:
        _check_roles(pairs["aws_iam_role"], "aws_iam_role in CREDENTIALS")
    elif not _KEY_PAIRS_REQUIRED <= set(pairs) <= _KEY_PAIRS_ALLOWED:
        raise _error(_CREDENTIALS_FORMS)


def check_values(fields: Mapping[str, Any]) -> None:
    """Refuse option values Redshift cannot use (the option keywords themselves already parsed)."""
    delimiter = fields.get("delimiter")
    if delimiter is not None and (len(delimiter) != 1 or not delimiter.isascii()):
        raise _error("DELIMITER must be a single ASCII character")
    fixedwidth = fields.get("fixedwidth")
    if fixedwidth is not None and not _FIXEDWIDTH.fullmatch(fixedwidth):
        raise _error("FIXEDWIDTH must list 'column:width' pairs separated by commas, e.g. '0:3,1:100'")
    for field, name in (("kms_key_id", "KMS_KEY_ID"), ("region", "REGION"), ("extension", "EXTENSION")):
        if fields.get(field) == "":
            raise _error(f"{name} must not be empty")


def check_combinations(options: set[str]) -> None:
    """Refuse the option pairs Redshift refuses; `options` holds keywords as given (`NULL AS` for NULL)."""
    fmt = next((name for name in _FORMAT_REFUSES if name in options), None)
    for refused in _FORMAT_REFUSES.get(fmt or "", ()):
        if refused in options:
            raise _error(f"{fmt} is not compatible with {refused}")
    for first, second in _PAIRS_REFUSED:
        if first in options and second in options:
            raise _error(f"{first} is not compatible with {second}")
    if "KMS_KEY_ID" in options and "ENCRYPTED" not in options:
        raise _error("KMS_KEY_ID requires ENCRYPTED")
    if "ROWGROUPSIZE" in options and fmt != "PARQUET":
        raise _error("ROWGROUPSIZE requires FORMAT PARQUET")


def check_query(select: str) -> None:
    """Refuse an outer LIMIT. Whether the query is valid SQL is left to the database that runs it,
    as Redshift reports query errors from its own SQL parser, not from UNLOAD's."""
    if has_outer_limit(select):
        raise _error(
            "Limit clause is not supported in the outer select of UNLOAD; "
            "move it into a subquery: SELECT * FROM (SELECT ... LIMIT n)"
        )
