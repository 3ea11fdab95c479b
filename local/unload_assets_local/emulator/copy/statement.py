"""COPY's statement parsed (pure: no I/O); whether a statement is a COPY from S3 is `sql/statements.py`'s.

`COPY table [(columns)] FROM 's3://...'` with Redshift's options for what `UNLOAD` writes (formats,
compressions, MANIFEST, DELIMITER, NULL AS, QUOTE, IGNOREHEADER, ESCAPE) and the same authorization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unload_assets.statement.sqltext import SqlTextError, Token, tokenize
from unload_assets_local.emulator.unload.command import UnloadError
from unload_assets_local.emulator.unload.parser import auth_kind

_FORMATS = {"CSV": "csv", "JSON": "json", "PARQUET": "parquet"}
_COMPRESSIONS = {"GZIP": "gzip", "BZIP2": "bzip2", "ZSTD": "zstd"}
_IGNORED = frozenset({"REGION", "TIMEFORMAT", "DATEFORMAT", "ACCEPTINVCHARS", "TRUNCATECOLUMNS"})


def copy_error(message: str) -> UnloadError:
    return UnloadError(f"COPY: {message}")


@dataclass(frozen=True)
class CopyCommand:
    table: str  # as written (maybe schema-qualified, maybe quoted): handed to PostgreSQL as is
    columns: tuple[str, ...]
    source: str  # 's3://bucket/prefix-or-manifest'
    manifest: bool = False
    format: str = "text"
    json_auto: bool = False
    delimiter: str | None = None
    null_as: str | None = None
    quote: str = '"'
    ignoreheader: int = 0
    compression: str | None = None
    escape: bool = False
    auth: dict[str, str] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return self.source[len("s3://") :].split("/", 1)[0]

    @property
    def key(self) -> str:
        rest = self.source[len("s3://") :]
        return rest.split("/", 1)[1] if "/" in rest else ""


def parse_copy(sql: str) -> CopyCommand:
    try:
        tokens = list(tokenize(sql))
    except SqlTextError as exc:
        raise copy_error(f"{exc} at position {exc.pos + 1}") from None
    return _Parser(sql, tokens).parse()


class _Parser:
    def __init__(self, sql: str, tokens: list[Token]) -> None:
        self.sql, self.tokens, self.i = sql, tokens, 1  # past COPY
        self.fields: dict[str, Any] = {}
        self.auth: dict[str, str] = {}

    def parse(self) -> CopyCommand:
        start = self.tokens[self.i].pos if self.i < len(self.tokens) else len(self.sql)
        while self.i < len(self.tokens) and not self._is("FROM") and not self._punct("("):
            self.i += 1
        if self.i >= len(self.tokens):
            raise copy_error("expected FROM 's3://...'")
        table = self.sql[start : self.tokens[self.i].pos].strip()
        columns: list[str] = []
        if self._punct("("):
            self.i += 1
            while not self._punct(")"):
                tok = self._take("a column name")
                if tok.kind in ("word", "ident"):
                    columns.append(tok.value.lower() if tok.kind == "word" else tok.value)
                elif not (tok.kind == "punct" and tok.value == ","):
                    raise copy_error(f"unexpected {tok.value!r} in the column list")
            self.i += 1
        if not self._is("FROM"):
            raise copy_error("expected FROM 's3://...' after the table")
        self.i += 1
        source = self._take("the S3 location").value
        while self.i < len(self.tokens):
            tok = self._take("an option")
            if tok.kind == "punct" and tok.value == ";":
                break
            self._option(tok)
        if not table:
            raise copy_error("no table to load into")
        if not self.auth:
            raise copy_error("no authorization: add IAM_ROLE default, IAM_ROLE '<role-arn>' or keys")
        try:
            auth_kind(self.auth)  # the same rules as UNLOAD's: one form, complete
        except UnloadError as exc:
            raise copy_error(str(exc).removeprefix("UNLOAD: ")) from None
        return CopyCommand(table=table, columns=tuple(columns), source=source, auth=self.auth, **self.fields)

    def _option(self, tok: Token) -> None:
        key = tok.value.upper() if tok.kind == "word" else ""
        if key == "FORMAT":
            self._word_if("AS")
            key = self._take("CSV, JSON or PARQUET").value.upper()
        if key in _FORMATS:
            self.fields["format"] = _FORMATS[key]
            if key == "CSV" and self._word_if("QUOTE"):
                self._word_if("AS")
                self.fields["quote"] = self._string("QUOTE")
            if key == "JSON":
                spec = self._string("JSON")
                if not spec.lower().startswith("auto"):  # auto, or auto ignorecase
                    raise copy_error(
                        "this emulator loads JSON 'auto' only (a JSONPaths file is not supported)"
                    )
                self.fields["json_auto"] = True
        elif key in _COMPRESSIONS:
            self.fields["compression"] = _COMPRESSIONS[key]
        elif key == "MANIFEST":
            self.fields["manifest"] = True
        elif key == "ESCAPE":
            self.fields["escape"] = True
        elif key in ("DELIMITER", "NULL"):
            self._word_if("AS")
            self.fields["delimiter" if key == "DELIMITER" else "null_as"] = self._string(key)
        elif key == "QUOTE":
            self._word_if("AS")
            self.fields["quote"] = self._string("QUOTE")
        elif key == "IGNOREHEADER":
            self._word_if("AS")
            number = self._take("a number of lines")
            if number.kind != "number" or not number.value.isdigit():
                raise copy_error("IGNOREHEADER must be followed by a whole number of lines")
            self.fields["ignoreheader"] = int(number.value)
        elif key in _IGNORED:
            self._word_if("AS")
            if self.i < len(self.tokens) and self.tokens[self.i].kind in ("string", "word"):
                self.i += 1
        elif key == "IAM_ROLE":
            value = self._take("default or a role ARN")
            self.auth["IAM_ROLE"] = "default" if value.kind == "word" else value.value
        elif key in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "CREDENTIALS"):
            self._word_if("AS")
            self.auth[key] = self._string(key)
        else:
            raise copy_error(f"syntax error at or near position {tok.pos + 1}: not a COPY option here")

    def _is(self, word: str) -> bool:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        return tok is not None and tok.kind == "word" and tok.value.upper() == word

    def _punct(self, char: str) -> bool:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        return tok is not None and tok.kind == "punct" and tok.value == char

    def _word_if(self, word: str) -> bool:
        """Step over `word` if it comes next (optional keywords such as AS)."""
        if self._is(word):
            self.i += 1
            return True
        return False

    def _take(self, what: str) -> Token:
        if self.i >= len(self.tokens):
            raise copy_error(f"expected {what}, found the end of the statement")
        self.i += 1
        return self.tokens[self.i - 1]

    def _string(self, option: str) -> str:
        tok = self._take(f"a quoted value after {option}")
        if tok.kind != "string":
            raise copy_error(f"{option} must be followed by a quoted string")
        return tok.value
