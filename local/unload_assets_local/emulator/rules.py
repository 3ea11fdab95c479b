"""What Redshift refuses in an UNLOAD that parses: the checks `parser.parse_unload` runs last.

Like the parser, no message here echoes a quoted value (it might be a secret in the wrong place).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from unload_assets.statement.sqltext import has_outer_limit
from unload_assets_local.emulator.command import AuthKind, UnloadError

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


def _error(message: str) -> UnloadError:
    return UnloadError(f"UNLOAD: {message}")


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
