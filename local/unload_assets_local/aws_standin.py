"""A stand-in on loopback for the AWS APIs that mint Redshift temporary database credentials.

Point boto3 at `RedshiftCredentialsStandIn.endpoint_url` (`endpoint_url=...`, or the variables
`AWS_ENDPOINT_URL_REDSHIFT` and `AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS`) and:

- provisioned clusters (`redshift`, AWS query protocol): every request is forwarded verbatim to moto, whose
  answer comes back verbatim, so `create_cluster`, `describe_clusters` and `get_cluster_credentials` work
  as moto implements them. The credentials of a successful `GetClusterCredentials` are recorded.
  `GetClusterCredentialsWithIAM`, which moto does not implement, is answered here for clusters moto knows
  (asked with `DescribeClusters`), as the role `IAMR:unload-local`;
- Redshift Serverless (`redshift-serverless`, AWS JSON 1.1): `GetCredentials` is answered here for the
  workgroups in `workgroups`, as the same role; other Serverless actions go to moto like the rest;
- the Redshift Data API (`redshift-data`, AWS JSON 1.1, `X-Amz-Target: RedshiftData.*`), when `data_api`
  is set: statements run on the emulator (data_api.py). `AWS_ENDPOINT_URL_REDSHIFT_DATA` points boto3 here.

Every credential handed out is recorded in the `CredentialRegistry` the emulator checks logins against.
`lifetime_seconds` shortens the life of credentials minted from then on, in the registry and in the answer
the client sees, below the 900 s AWS allows, so a test can outlive one credential.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode, urlsplit

from unload_assets_local.aws_protocol import (
    ApiError,
    iso,
    new_password,
    parse_iso,
    query_action,
    query_error_xml,
    query_params,
    query_result_xml,
    serverless_request,
    with_expiration,
    with_iam_request,
    xml_fields,
)
from unload_assets_local.data_api import RedshiftDataStandIn
from unload_assets_local.emulator.login.credentials import CredentialRegistry
from unload_assets_local.loopback import LoopbackService, forward, read_body, relay
from unload_assets_local.postgres import free_port

log = logging.getLogger(__name__)

# The database user Redshift makes for an IAM role is `IAMR:<role name>`; the stack's role is `unload-local`.
ROLE_DB_USER = "IAMR:unload-local"
SERVERLESS_TARGET = "RedshiftServerless.GetCredentials"
DATA_API_PREFIX = "RedshiftData."
WITH_IAM_ACTION = "GetClusterCredentialsWithIAM"


class RedshiftCredentialsStandIn(LoopbackService):
    bound_as, thread_name = "standin", "aws-credentials"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(
        self,
        moto_endpoint_url: str,
        registry: CredentialRegistry,
        *,
        port: int = 0,
        workgroups: Iterable[str] = (),
        lifetime_seconds: float | None = None,
    ) -> None:
        upstream = urlsplit(moto_endpoint_url)
        if upstream.scheme != "http" or not upstream.hostname or not upstream.port:
            raise ValueError(f"moto_endpoint_url must be http://host:port, got {moto_endpoint_url!r}")
        self.upstream: tuple[str, int] = (upstream.hostname, upstream.port)
        self.registry = registry
        # Chosen now (not at bind time) so endpoint_url can go into .env before the server starts.
        self.port = port or free_port()
        self.workgroups: set[str] = set(workgroups)
        # When set, credentials minted from then on expire this many seconds after minting (both APIs).
        self.lifetime_seconds: float | None = lifetime_seconds
        self.calls: Counter[str] = Counter()  # requests per action, e.g. calls["GetClusterCredentials"]
        self.data_api: RedshiftDataStandIn | None = None  # the Data API, when the stack has an emulator
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- called from handler threads -----------------------------------------------------
    def _count(self, action: str) -> None:
        with self._lock:
            self.calls[action] += 1

    def _expiry(self, requested_seconds: float) -> float:
        """When a credential minted now expires: the override if set, else what the caller asked for."""
        lifetime = self.lifetime_seconds
        return time.time() + (requested_seconds if lifetime is None else lifetime)

    def _record(self, action: str, user: str, password: str, expires_at: float) -> None:
        self.registry.record(user, password, expires_at)
        log.debug("%s: minted a credential for %s", action, user)  # never the password


class _Handler(BaseHTTPRequestHandler):
    standin: RedshiftCredentialsStandIn  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects
    server_version = "RedshiftCredentialsStandIn/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; request lines carry no secrets, but one per call would drown the test output

    def _handle(self) -> None:
        body = read_body(self)
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith(DATA_API_PREFIX):
            self._data_api(target.removeprefix(DATA_API_PREFIX), body)
            return
        if target == SERVERLESS_TARGET:
            self.standin._count(target.rpartition(".")[2])
            self._serverless_get_credentials(body)
            return
        action = target.rpartition(".")[2] if target else query_action(self.path, self.headers, body)
        if action:
            self.standin._count(action)
        if not target and action == WITH_IAM_ACTION:
            self._get_cluster_credentials_with_iam(body)
            return
        try:
            status, headers, reply = forward(
                self.standin.upstream, self.command, self.path, self._upstream_headers(), body
            )
        except OSError as e:
            log.warning("moto at %s:%s unreachable for %s: %s", *self.standin.upstream, action or "?", e)
            self._send(502, "text/plain", b"moto unreachable\n")
            return
        if action == "GetClusterCredentials" and status == 200:
            reply = self._record_cluster_credentials(reply)
        relay(self, (status, headers, reply))  # moto's own Server and Date headers pass through

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    # ---- forwarding to moto --------------------------------------------------------------
    def _upstream_headers(self) -> dict[str, str]:
        # Without the client's Host, http.client names moto's address.
        return {k: v for k, v in self.headers.items() if k.lower() != "host"}

    def _record_cluster_credentials(self, reply: bytes) -> bytes:
        """Record what moto minted, first moving its expiration when the lifetime override is set."""
        try:
            result = xml_fields(reply, ("DbUser", "DbPassword", "Expiration"))
            user, password, expiration = result["DbUser"], result["DbPassword"], result["Expiration"]
            expires_at = parse_iso(expiration)
        except (ET.ParseError, KeyError, ValueError):
            log.warning("GetClusterCredentials: could not read moto's answer; nothing recorded")
            return reply
        if self.standin.lifetime_seconds is not None:
            expiration = iso(self.standin._expiry(0))
            expires_at = parse_iso(expiration)  # exactly what the client will parse
            reply = with_expiration(reply, expiration)
        self.standin._record("GetClusterCredentials", user, password, expires_at)
        return reply

    # ---- GetClusterCredentialsWithIAM (query protocol; moto lacks it) --------------------
    def _get_cluster_credentials_with_iam(self, body: bytes) -> None:
        try:
            cluster, duration = with_iam_request(query_params(self.path, self.headers, body))
        except ApiError as e:
            self._query_error(e)
            return
        # Does moto know the cluster? Ask it, as the caller (its credentials pick moto's account and region).
        question = urlencode(
            {"Action": "DescribeClusters", "Version": "2012-12-01", "ClusterIdentifier": cluster}
        )
        headers = self._upstream_headers()
        headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        try:
            status, reply_headers, reply = forward(
                self.standin.upstream, "POST", "/", headers, question.encode()
            )
        except OSError as e:
            log.warning("moto at %s:%s unreachable for %s: %s", *self.standin.upstream, WITH_IAM_ACTION, e)
            self._send(502, "text/plain", b"moto unreachable\n")
            return
        if status != 200:  # e.g. ClusterNotFound, which is what AWS answers GetClusterCredentialsWithIAM too
            content_type = next((v for n, v in reply_headers if n.lower() == "content-type"), "text/xml")
            self._send(status, content_type, reply)
            return
        password = new_password()
        expiration = iso(self.standin._expiry(duration))
        self.standin._record(WITH_IAM_ACTION, ROLE_DB_USER, password, parse_iso(expiration))
        result = (
            ("DbUser", ROLE_DB_USER),
            ("DbPassword", password),
            ("Expiration", expiration),
            ("NextRefreshTime", expiration),
        )
        request_id = str(uuid.uuid4())
        xml = query_result_xml(WITH_IAM_ACTION, result, request_id)
        self._send(200, "text/xml", xml.encode(), headers={"x-amzn-RequestId": request_id})

    def _query_error(self, e: ApiError) -> None:
        request_id = str(uuid.uuid4())
        xml = query_error_xml(e, request_id)
        self._send(e.status, "text/xml", xml.encode(), headers={"x-amzn-RequestId": request_id})

    # ---- RedshiftServerless.GetCredentials (JSON 1.1; moto lacks it) ---------------------
    def _serverless_get_credentials(self, body: bytes) -> None:
        try:
            workgroup, duration = serverless_request(body, self.standin.workgroups)
        except ApiError as e:
            self._send_json(e.status, {"__type": e.code, "message": e.message})
            return
        password = new_password()
        # Milliseconds, like AWS: the float botocore turns into a datetime is then the one recorded.
        expiration = round(self.standin._expiry(duration), 3)
        self.standin._record(f"GetCredentials ({workgroup})", ROLE_DB_USER, password, expiration)
        self._send_json(
            200,
            {
                "dbUser": ROLE_DB_USER,
                "dbPassword": password,
                "expiration": expiration,
                "nextRefreshTime": expiration,
            },
        )

    # ---- the Redshift Data API (JSON 1.1) ---------------------------------------------------
    def _data_api(self, action: str, body: bytes) -> None:
        self.standin._count(action)
        data_api = self.standin.data_api
        try:
            if data_api is None:
                raise ApiError(400, "UnknownOperationException", "this stand-in serves no Data API")
            answer = data_api.answer(action, body)
        except ApiError as e:
            self._send_json(e.status, {"__type": e.code, "message": e.message})
            return
        self._send_json(200, answer)

    # ---- answering ---------------------------------------------------------------------
    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self._send(
            status, "application/x-amz-json-1.1", data, headers={"x-amzn-RequestId": str(uuid.uuid4())}
        )

    def _send(
        self,
        status: int,
        content_type: str,
        data: bytes,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
