"""UNLOAD statement text for one target and one partition: pure functions, no I/O."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from unload_assets.rename.header import header_by_rename
from unload_assets.s3_naming import check_bucket_name, check_key
from unload_assets.statement.sqltext import SqlTextError, Token, has_outer_limit, quote_literal, tokenize

if TYPE_CHECKING:
    from unload_assets.catalogue.model import UnloadTarget

PLACEHOLDERS = ("partition_date", "partition_start", "partition_end")
MAX_STATEMENT_BYTES = 16 * 1024 * 1024  # Redshift's limit for one statement

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_ALLOWED_PLACEHOLDERS = ", ".join("{{ " + name + " }}" for name in PLACEHOLDERS)


class _Scan(NamedTuple):
    tokens: tuple[Token, ...]
    placeholders: tuple[re.Match[str], ...]  # `{{ name }}` found in SQL code
    problems: tuple[str, ...]


@functools.lru_cache(maxsize=32)  # validation asks about the same SQL several times in a row
def _scan(sql: str) -> _Scan:
    # The emulator's lexer, so that literals, quoted identifiers, dollar quotes and comments (where a
    # placeholder is just text) are recognised exactly as Redshift reads them.
    tokens: list[Token] = []
    problems: list[str] = []
    try:
        tokens.extend(tokenize(sql))
    except SqlTextError as exc:
        problems.append(f"{exc} starting on line {sql.count(chr(10), 0, exc.pos) + 1} of the SQL")
    placeholders: list[re.Match[str]] = []
    for tok in tokens:
        inside_last = placeholders and tok.pos < placeholders[-1].end()
        if tok.kind != "punct" or tok.value not in "{}" or inside_last:
            continue
        match = _PLACEHOLDER.match(sql, tok.pos)
        if match is None:
            problems.append("stray brace; write placeholders as {{ partition_date }}")
            break
        placeholders.append(match)
    return _Scan(tuple(tokens), tuple(placeholders), tuple(problems))


def placeholder_names(sql: str) -> set[str]:
    """Names of the `{{ name }}` placeholders in SQL code (not in literals or comments)."""
    return {match.group(1) for match in _scan(sql).placeholders}


def sql_problems(sql: str) -> list[str]:
    """What makes `sql` unusable as the SELECT of an UNLOAD, found without parsing it."""
    if _too_long(sql):  # first, and alone: scanning megabytes of text only to refuse it is slow
        return ["is too long: the UNLOAD statement would exceed Redshift's 16 MB limit"]
    if "\0" in sql:  # psycopg2 refuses it at run time, where the op would retry a hopeless statement
        return ["contains a NUL character (\\0), which no Redshift statement can hold"]
    tokens, placeholders, found = _scan(sql)
    problems = list(found)
    unknown = sorted({match.group(1) for match in placeholders} - set(PLACEHOLDERS))
    if unknown:
        problems.append(f"unknown placeholder {{{{ {unknown[0]} }}}}; allowed: {_ALLOWED_PLACEHOLDERS}")
    if any(tok.kind == "punct" and tok.value == ";" for tok in tokens):
        problems.append("contains ';': UNLOAD takes one SELECT, without a trailing semicolon")
    first = tokens[0].value.lower() if tokens else ""
    if first not in ("select", "with", "("):
        problems.append("must be a SELECT (or WITH ... SELECT) query")
    if has_outer_limit(sql):
        problems.append("has an outer LIMIT, which UNLOAD refuses; nest it: select * from (... limit n)")
    return problems


def _too_long(select: str) -> bool:
    # Quoting can double the text; the rest of the statement and the bound dates fit in the margin.
    return len(quote_literal(select).encode()) + 64 * 1024 > MAX_STATEMENT_BYTES


def bind_placeholders(sql: str, partition_date: date) -> str:
    """`sql` with each placeholder in code replaced by a SQL literal built from the date itself."""
    if isinstance(partition_date, datetime):  # a datetime is a date; its time part would leak into literals
        raise TypeError("partition_date must be a datetime.date, not a datetime")
    day, next_day = partition_date.isoformat(), (partition_date + timedelta(days=1)).isoformat()
    values = {
        "partition_date": "DATE " + quote_literal(day),
        "partition_start": "TIMESTAMP " + quote_literal(day + " 00:00:00"),
        "partition_end": "TIMESTAMP " + quote_literal(next_day + " 00:00:00"),
    }
    pieces, pos = [], 0
    for match in _scan(sql).placeholders:
        if match.group(1) not in values:
            raise ValueError(f"unknown placeholder {match.group(0)}; allowed: {_ALLOWED_PLACEHOLDERS}")
        pieces += [sql[pos : match.start()], values[match.group(1)]]
        pos = match.end()
    return "".join(pieces) + sql[pos:]


def render_select(target: UnloadTarget, partition_date: date | None) -> str:
    """The target's SELECT for one partition (`None` for a target without partitioning)."""
    daily = target.partitioning.type == "daily"
    if daily and partition_date is None:
        raise ValueError(f"target {target.name!r} is partitioned daily: a partition_date is required")
    if not daily and partition_date is not None:
        raise ValueError(f"target {target.name!r} has no partitioning: partition_date must be None")
    select = target.sql.strip()
    return select if partition_date is None else bind_placeholders(select, partition_date)


_SEGMENTS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]*(?:/[A-Za-z0-9][A-Za-z0-9._=-]*)*")


def staging_prefix(
    *, bucket: str, staging_prefix: str, target_name: str, partition_key: str | None, run_id: str
) -> str:
    """`s3://<bucket>/<staging prefix>/<target>/<partition or 'unpartitioned'>/<run_id>/`.

    The path must be fresh for every UNLOAD attempt (see `build_unload`): pass a run_id that also
    identifies the attempt when the op can retry inside one run.
    """
    check_bucket_name(bucket)
    base = staging_prefix.strip("/")
    if base:
        check_key(base)
    # run_id may carry its own sub-folders (e.g. `<run id>/attempt-1`); the others are one segment each.
    for label, value in (("target_name", target_name), ("partition_key", partition_key), ("run_id", run_id)):
        if value is not None and not (_SEGMENTS.fullmatch(value) and (label == "run_id" or "/" not in value)):
            raise ValueError(f"{label} {value!r} is not a clean S3 path segment")
    parts = [base, target_name, partition_key or "unpartitioned", run_id]
    return f"s3://{bucket}/" + "/".join(part for part in parts if part) + "/"


_ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::\d{12}:role/(?:[\w+=.@-]+/)*[\w+=.@-]{1,64}", re.ASCII)


def check_iam_role(role: str) -> str:
    """`role` if it is `default` or a comma-separated chain (at most 10) of IAM role ARNs."""
    if "'" in role or '"' in role:
        raise ValueError("IAM role must not contain quotes; give the bare ARN")
    if role.lower() == "default":
        return role
    arns = role.split(",")
    if len(arns) > 10:
        raise ValueError(f"IAM role chain has {len(arns)} roles; Redshift chains at most 10")
    for arn in arns:
        if not _ROLE_ARN.fullmatch(arn):
            raise ValueError(
                f"invalid IAM role {arn!r}: expected 'default' or arn:aws:iam::<12-digit account>:role/<name>"
                " (chain roles with commas, no spaces)"
            )
    return role


@dataclass(frozen=True, repr=False)
class UnloadAuth:
    """How Redshift authorizes the UNLOAD: an IAM role (preferred), or access keys."""

    iam_role: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __post_init__(self) -> None:
        for name in ("iam_role", "access_key_id", "secret_access_key", "session_token"):
            if getattr(self, name) == "":  # unset env vars often arrive as "" (.env files, EnvVar)
                object.__setattr__(self, name, None)
        keys = (self.access_key_id, self.secret_access_key, self.session_token)
        if self.iam_role is not None:
            if any(value is not None for value in keys):
                raise ValueError("UNLOAD authorization: set an IAM role or access keys, not both")
            check_iam_role(self.iam_role)
        elif self.access_key_id is None or self.secret_access_key is None:
            raise ValueError(
                "UNLOAD authorization: set an IAM role (UNLOAD_IAM_ROLE), or both UNLOAD_ACCESS_KEY_ID"
                " and UNLOAD_SECRET_ACCESS_KEY (plus UNLOAD_SESSION_TOKEN for temporary keys)"
            )

    def __repr__(self) -> str:
        def shown(value: str | None) -> str:
            return "None" if value is None else "'***'"

        return (
            f"UnloadAuth(iam_role={self.iam_role!r}, access_key_id={shown(self.access_key_id)}, "
            f"secret_access_key={shown(self.secret_access_key)}, session_token={shown(self.session_token)})"
        )

    def clause(self, *, redacted: bool) -> str:
        """The authorization clause; `redacted` puts `'***'` where every secret goes."""
        if self.iam_role is not None:
            role = self.iam_role
            return "IAM_ROLE default" if role.lower() == "default" else f"IAM_ROLE {quote_literal(role)}"

        def secret(value: str) -> str:
            return "'***'" if redacted else quote_literal(value)

        assert self.access_key_id is not None and self.secret_access_key is not None  # __post_init__
        text = f"ACCESS_KEY_ID {secret(self.access_key_id)}"
        text += f" SECRET_ACCESS_KEY {secret(self.secret_access_key)}"
        return text if self.session_token is None else f"{text} SESSION_TOKEN {secret(self.session_token)}"


@dataclass(frozen=True)
class UnloadStatement:
    """`sql` is what runs; `redacted` is what may be logged, stored as metadata or sent to Slack."""

    sql: str = field(repr=False)
    redacted: str

    def __str__(self) -> str:
        return self.redacted


_OPTION_WORDS = {
    "header": "HEADER",
    "delimiter": "DELIMITER",
    "null_as": "NULL AS",
    "addquotes": "ADDQUOTES",
    "compression": "GZIP/BZIP2/ZSTD",
}
_REFUSED_WITH = {
    "parquet": tuple(_OPTION_WORDS),
    "json": ("header", "delimiter", "null_as", "addquotes"),
    "csv": ("addquotes",),  # CSV quotes fields itself
}


def option_conflicts(target: UnloadTarget) -> list[tuple[str, str]]:
    """`(field, problem)` for each option combination Redshift refuses."""
    problems = []
    for name in _REFUSED_WITH.get(target.format, ()):
        if getattr(target, name) not in (None, False, "none"):
            why = " (Parquet files are compressed internally)" if name == "compression" else ""
            refused = f"FORMAT {target.format.upper()} can't be combined with {_OPTION_WORDS[name]}{why}"
            problems.append((name, refused))
    if target.delimiter is not None and target.delimiter in "\n\r\0":
        problems.append(("delimiter", "a line break or NUL can't be the delimiter"))
    elif target.delimiter is not None and not target.delimiter.isascii():
        problems.append(("delimiter", f"{target.delimiter!r}: Redshift takes one ASCII character"))
    if target.null_as is not None and "\0" in target.null_as:
        problems.append(("null_as", "a NUL character can't be part of a Redshift statement"))
    if target.format == "csv" and target.delimiter == '"':
        problems.append(("delimiter", "'\"' is the CSV quote character"))
    return problems


def _options(target: UnloadTarget) -> list[str]:
    options = [] if target.format == "text" else [f"FORMAT {target.format.upper()}"]
    if target.compression != "none":
        options.append(target.compression.upper())
    # With `combine`, the rename writes the header line once on top of the joined files instead.
    if target.header and not header_by_rename(fmt=target.format, header=True, on_split=target.on_split):
        options.append("HEADER")
    if target.addquotes:
        options.append("ADDQUOTES")
    if target.delimiter is not None:
        options.append(f"DELIMITER {quote_literal(target.delimiter)}")
    if target.null_as is not None:
        options.append(f"NULL AS {quote_literal(target.null_as)}")
    options.append("PARALLEL ON" if target.parallel else "PARALLEL OFF")  # explicit: Redshift defaults ON
    if target.max_file_size_mb is not None:
        size = f"{target.max_file_size_mb:.6f}".rstrip("0").rstrip(".")  # 100.0 -> 100, no exponent
        options.append(f"MAXFILESIZE {size} MB")
    # The rename op reads the manifest, never a listing. No ALLOWOVERWRITE or CLEANPATH: every attempt
    # writes under its own fresh staging prefix, so a non-empty destination is a bug UNLOAD should refuse.
    options.append("MANIFEST VERBOSE")
    return options


def build_unload(
    target: UnloadTarget, *, partition_date: date | None, location: str, auth: UnloadAuth
) -> UnloadStatement:
    """The UNLOAD of `target`'s partition into `location` (an `s3://` staging prefix ending in `/`)."""
    conflicts = option_conflicts(target)
    if conflicts:
        raise ValueError(f"target {target.name!r}: " + "; ".join(f"{f}: {why}" for f, why in conflicts))
    if not location.startswith("s3://"):
        raise ValueError(f"target {target.name!r}: UNLOAD location must start with s3://, got {location!r}")
    if _too_long(target.sql):
        raise ValueError(f"target {target.name!r}: the UNLOAD statement would exceed Redshift's 16 MB limit")
    head = f"UNLOAD ({quote_literal(render_select(target, partition_date))})\nTO {quote_literal(location)}\n"
    tail = "\n" + "\n".join(_options(target))
    sql = head + auth.clause(redacted=False) + tail
    if len(sql.encode()) > MAX_STATEMENT_BYTES:
        raise ValueError(f"target {target.name!r}: the UNLOAD statement would exceed Redshift's 16 MB limit")
    return UnloadStatement(sql=sql, redacted=head + auth.clause(redacted=True) + tail)
