"""S3 naming: final object keys rendered from a target's key template, and bucket-name rules."""

from __future__ import annotations

import re
import string
from datetime import date, datetime

ALLOWED_VARIABLES = frozenset({"target", "date", "yyyy", "mm", "dd"})
DATE_VARIABLES = frozenset({"date", "yyyy", "mm", "dd"})
_ALLOWED_TEXT = ", ".join("{" + v + "}" for v in ("target", "date", "yyyy", "mm", "dd"))

# AWS's "characters to avoid" in keys plus quotes and whitespace: they break URLs, shells, COPY
# manifests and the consumers' tooling long after the export itself succeeded.
_FORBIDDEN_CHARS = frozenset("\\{}^%`[]\"'<>#|~")
# S3 keys stop at 1024 bytes; `on_split: parts` appends `.part-NNN` and a `.manifest` sibling, so keep room.
MAX_KEY_BYTES = 1024 - 32
# Worst-case values for checking a template before any partition exists.
_SAMPLE_TARGET = "t" * 63
_SAMPLE_DATE = date(2026, 12, 31)

_formatter = string.Formatter()


def template_variables(template: str) -> set[str]:
    """The `{variables}` used by `template`; ValueError for unknown ones, format specs or stray braces."""
    names: set[str] = set()
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:  # "Single '{' encountered in format string" and friends
        raise ValueError(f"unbalanced braces in {template!r} ({exc}); write variables as {{date}}") from exc
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if conversion is not None or spec:
            suffix = ("!" + conversion if conversion else "") + (":" + spec if spec else "")
            shown = "{" + field + suffix + "}"
            raise ValueError(f"format specs and conversions are not supported: {shown}; use {{{field}}}")
        if field not in ALLOWED_VARIABLES:
            raise ValueError(f"unknown variable {{{field}}}; allowed: {_ALLOWED_TEXT}")
        names.add(field)
    return names


def check_key(key: str) -> str:
    """`key` if it is a clean S3 object key, else ValueError saying what is wrong."""
    problem = _key_problem(key)
    if problem:
        raise ValueError(f"key {problem}")
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "is empty"
    if key.startswith("/"):
        return "starts with '/'; S3 keys have no leading slash"
    if key.endswith("/"):
        return "ends with '/', which names a folder, not an object"
    segments = key.split("/")
    if "" in segments:
        return "contains '//' (an empty path segment)"
    if "." in segments or ".." in segments:
        return "contains a '.' or '..' path segment"
    for char in key:
        if char in _FORBIDDEN_CHARS or char.isspace() or not char.isprintable():
            return f"contains {char!r}; refused: spaces, quotes, backslash, control chars, {{}}^%`[]<>#|~"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes (S3 allows 1024, minus room for part suffixes)"
    return None


def check_key_template(template: str) -> set[str]:
    """Validate a key template; returns its variables. Renders worst-case values to check the key shape."""
    names = template_variables(template)
    check_key(_render(template, _SAMPLE_TARGET, _SAMPLE_DATE))
    return names


def render_key(template: str, *, target: str, partition_date: date | None) -> str:
    """The final object key for `target` (and its partition date, for daily targets)."""
    if isinstance(partition_date, datetime):  # a datetime is a date too; its time would be silently dropped
        raise TypeError("partition_date must be a datetime.date, not a datetime")
    names = template_variables(template)
    if partition_date is None and names & DATE_VARIABLES:
        raise ValueError(f"key template {template!r} needs a partition date")
    return check_key(_render(template, target, partition_date))


def _render(template: str, target: str, partition_date: date | None) -> str:
    values = {"target": target}
    if partition_date is not None:
        values |= {
            "date": partition_date.isoformat(),
            "yyyy": f"{partition_date.year:04d}",
            "mm": f"{partition_date.month:02d}",
            "dd": f"{partition_date.day:02d}",
        }
    return template.format_map(values)


_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_bucket_name(name: str) -> str:
    """`name` if it follows the S3 general-purpose bucket naming rules, else ValueError."""
    if not _BUCKET_RE.fullmatch(name):
        raise ValueError(
            f"invalid S3 bucket name {name!r}: 3-63 characters of a-z, 0-9, '.', '-', "
            "starting and ending with a letter or digit (no 's3://', no '/')"
        )
    if ".." in name or ".-" in name or "-." in name:
        raise ValueError(f"invalid S3 bucket name {name!r}: '..', '.-' and '-.' are not allowed")
    if _IP_RE.fullmatch(name):
        raise ValueError(f"invalid S3 bucket name {name!r}: must not look like an IP address")
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        raise ValueError(f"invalid S3 bucket name {name!r}: uses a prefix or suffix AWS reserves")
    return name


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; ("", "") for anything else (metadata written by hand, say)."""
    if not uri.startswith("s3://"):
        return "", ""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key
