"""Every S3 name the project writes or reads, in one place.

- final keys, rendered from a target's key template (`render_key`), and the rules keys and buckets obey;
- the parts of a final key delivered in parts, and their COPY manifest (`part_key`, `manifest_key_for`);
- the staging prefix of one UNLOAD attempt (`staging_prefix`) and the op handoff under it;
- `s3://` URIs (`s3_url`, `parse_s3_uri`).
"""

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


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


# Parts of a final key delivered in parts. `exports/s/sales_2026-11-22.csv.gz` ->
# `exports/s/sales_2026-11-22.part-001.csv.gz`; the manifest `COPY ... MANIFEST` loads sits next to it at
# `exports/s/sales_2026-11-22.csv.gz.manifest`.

# Up to two trailing extensions that start with a letter (`.csv.gz`, `.parquet`, `.json.zst`): dots inside
# the stem that are part of a date or a version (`sales_2026.11.22`, `report.v2`) stay in the stem when
# they are followed by a digit or are further left than the format+compression pair.
_NAME = re.compile(r"^(?P<stem>.+?)(?P<suffixes>(?:\.[A-Za-z][A-Za-z0-9]{0,7}){0,2})$", re.DOTALL)

MANIFEST_SUFFIX = ".manifest"


def split_final_key(final_key: str) -> tuple[str, str, str]:
    """`(directory incl. trailing '/', stem, suffixes)` of a final key."""
    directory, _, name = final_key.rpartition("/")
    if not name:
        raise ValueError(f"final key {final_key!r} names a folder, not an object")
    match = _NAME.match(name)
    assert match is not None  # `.+?` matches any non-empty name
    return (directory + "/" if directory else ""), match["stem"], match["suffixes"]


def part_key(final_key: str, n: int) -> str:
    """Key of part `n` (1-based, manifest order) of `final_key`; >= 3 digits so parts sort by name."""
    if n < 1:
        raise ValueError(f"part numbers start at 1, got {n}")
    directory, stem, suffixes = split_final_key(final_key)
    return f"{directory}{stem}.part-{n:03d}{suffixes}"


def part_listing_prefix(final_key: str) -> str:
    """Prefix under which every part of `final_key` (from any run) is listed."""
    directory, stem, _ = split_final_key(final_key)
    return f"{directory}{stem}.part-"


def part_number(final_key: str, key: str) -> int | None:
    """The part number if `key` is a part of `final_key` (any run, any digit count), else None."""
    directory, stem, suffixes = split_final_key(final_key)
    pattern = re.escape(directory + stem) + r"\.part-(\d{3,})" + re.escape(suffixes)
    match = re.fullmatch(pattern, key, re.DOTALL)
    return int(match.group(1)) if match else None


def manifest_key_for(final_key: str) -> str:
    return final_key + MANIFEST_SUFFIX


# Staging: where one UNLOAD attempt writes, and where the unload op hands its result to the rename op.
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


def handoff_prefix(staging_prefix: str) -> str:
    """Where the handoff pickles live: `<staging>/_dagster/storage/<run id>/<step>/staged`."""
    return "/".join(p for p in (staging_prefix.strip("/"), "_dagster") if p)
