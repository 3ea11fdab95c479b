"""How the AWS APIs the credentials stand-in serves are read and written (no state, no I/O).

The query protocol of provisioned Redshift (parameters in the query string or a form body, answers and
errors in XML) and the JSON 1.1 request of Redshift Serverless `GetCredentials`; the requests the
stand-in answers itself checked as AWS checks them; the passwords and timestamps of its answers.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

MIN_DURATION, MAX_DURATION = 900, 3600
REDSHIFT_XMLNS = "http://redshift.amazonaws.com/doc/2012-12-01/"
_WORKGROUP_NAME = re.compile(r"[a-z0-9-]{3,64}")
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_EXPIRATION_ELEMENT = re.compile(rb"<Expiration>[^<]*</Expiration>")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def with_iam_request(params: dict[str, str]) -> tuple[str, int]:
    """A GetClusterCredentialsWithIAM request's cluster and duration; `ApiError` as AWS answers."""
    cluster = params.get("ClusterIdentifier")
    if not cluster:
        raise ApiError(400, "InvalidParameterValue", "ClusterIdentifier is required")
    duration = int_param(params.get("DurationSeconds"), MIN_DURATION, "DurationSeconds")
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise ApiError(400, "InvalidParameterValue", "Token duration must be between 900 and 3600 seconds")
    return cluster, duration


def serverless_request(body: bytes, workgroups: set[str]) -> tuple[str, int]:
    """A Redshift Serverless GetCredentials request's workgroup and duration; `ApiError` as AWS answers."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "SerializationException", "the request body is not JSON") from None
    if not isinstance(request, dict):
        raise ApiError(400, "SerializationException", "the request body is not a JSON object")
    workgroup = request.get("workgroupName")
    if not isinstance(workgroup, str) or not workgroup:
        raise ApiError(
            400,
            "ValidationException",
            "workgroupName is required (the stand-in does not resolve customDomainName)",
        )
    if not _WORKGROUP_NAME.fullmatch(workgroup):
        raise ApiError(
            400,
            "ValidationException",
            f"1 validation error detected: Value '{workgroup}' at 'workgroupName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: ^[a-z0-9-]+$ (length 3 to 64)",
        )
    for name in ("dbName", "customDomainName"):
        if request.get(name) is not None and not isinstance(request[name], str):
            raise ApiError(400, "SerializationException", f"{name} must be a string")
    duration = request.get("durationSeconds", MAX_DURATION)
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise ApiError(400, "SerializationException", "durationSeconds must be an integer")
    if not MIN_DURATION <= duration <= MAX_DURATION:
        bound = "greater than or equal to 900" if duration < MIN_DURATION else "less than or equal to 3600"
        raise ApiError(
            400,
            "ValidationException",
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy "
            f"constraint: Member must have value {bound}",
        )
    if workgroup not in workgroups:
        raise ApiError(400, "ResourceNotFoundException", f"Workgroup {workgroup} not found.")
    return workgroup, duration


def query_params(path: str, headers: Any, body: bytes) -> dict[str, str]:
    """An AWS query-protocol request's parameters: the query string, then a form-encoded body."""
    params = {k: v[0] for k, v in parse_qs(urlsplit(path).query, keep_blank_values=True).items()}
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if body and content_type == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return params
        params.update({k: v[0] for k, v in form.items()})
    return params


def query_action(path: str, headers: Any, body: bytes) -> str | None:
    return query_params(path, headers, body).get("Action") or None


def int_param(value: str | None, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, "InvalidParameterValue", f"{name} must be an integer") from None


def xml_fields(reply: bytes, names: Iterable[str]) -> dict[str, str]:
    """The text of the first element with each local name (namespaces ignored)."""
    wanted, found = set(names), {}
    for element in ET.fromstring(reply).iter():
        local = element.tag.rpartition("}")[2]
        if local in wanted and local not in found:
            found[local] = element.text or ""
    return found


def with_expiration(reply: bytes, expiration: str) -> bytes:
    """A query-protocol answer with its (first) `Expiration` element's text replaced."""
    new = b"<Expiration>" + expiration.encode() + b"</Expiration>"
    return _EXPIRATION_ELEMENT.sub(lambda _: new, reply, count=1)


def query_result_xml(action: str, result: Iterable[tuple[str, str]], request_id: str) -> str:
    """A query-protocol answer: the `action`'s result elements (values escaped) and the request id."""
    fields = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in result)
    return (
        f'<{action}Response xmlns="{REDSHIFT_XMLNS}"><{action}Result>{fields}'
        f"</{action}Result><ResponseMetadata><RequestId>{request_id}</RequestId>"
        f"</ResponseMetadata></{action}Response>"
    )


def query_error_xml(e: ApiError, request_id: str) -> str:
    return (
        f'<ErrorResponse xmlns="{REDSHIFT_XMLNS}"><Error><Type>Sender</Type>'
        f"<Code>{escape(e.code)}</Code><Message>{escape(e.message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )


def new_password() -> str:
    # Letters and digits only, like moto's and AWS's, so the password is safe in any DSN or URL.
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(40))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> float:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
