"""A fault-injecting HTTP proxy on loopback in front of the local S3 server.

Point a client at `FaultProxy.endpoint_url` (e.g. `AWS_ENDPOINT_URL_S3`) and every request is forwarded
to the real S3 server, except those a `Rule` picks: they get an S3-style 500 `InternalError`, a TCP reset
(before or after S3 saw the request), a slow answer, S3's answer changed by a function (`rewrite`: a
wrong size in a HeadObject, say), an answer made up without asking S3 (`answer`: a DeleteObjects that
reports per-key errors and deletes nothing), or a short read (`short`: the headers promise the whole
body, half of it arrives, then the connection drops). Rules pick requests by S3 operation, path or any
predicate on method, query, headers and body, skip the first matches (to hit "the Nth UploadPartCopy")
and fire for a seeded random fraction. `injected` counts what was done, per kind and operation; with
`record=True`, `requests` keeps every request seen (headers included: what a client asked S3 for).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from unload_assets_local.loopback import LoopbackService, Reply, forward, read_body, relay, relay_head
from unload_assets_local.postgres import free_port

Kind = Literal["error", "reset", "reset_after", "slow", "rewrite", "answer", "short"]
_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>We encountered an'
    " internal error. Please try again.</Message><RequestId>FAULT{n:08d}</RequestId></Error>"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = field(default=b"", repr=False)  # e.g. the keys a DeleteObjects names

    @property
    def operation(self) -> str:
        """The S3 API operation, told apart the way S3 itself does (method, sub-resource, copy header)."""
        q, copy = self.query, "x-amz-copy-source" in self.headers
        if self.method == "PUT" and "uploadId" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        if self.method == "PUT":
            return "CopyObject" if copy else ("PutObject" if self.path.count("/") > 1 else "CreateBucket")
        if self.method == "POST":
            return (
                "DeleteObjects"
                if "delete" in q
                else ("CreateMultipartUpload" if "uploads" in q else "CompleteMultipartUpload")
            )
        if self.method == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        if self.method == "HEAD":
            return "HeadObject" if self.path.count("/") > 1 else "HeadBucket"
        return "GetObject" if self.path.strip("/").count("/") else "ListObjects"


@dataclass
class Rule:
    """Inject `kind` into requests that match; `skip` matches pass first, then at most `times` are hit."""

    kind: Kind
    operation: str | None = None  # e.g. "UploadPartCopy", see `Request.operation`
    path_contains: str | None = None
    predicate: Callable[[Request], bool] | None = None  # anything else: method, query, headers, body
    fraction: float = 1.0
    skip: int = 0
    times: int | None = None
    delay: float = 0.5  # seconds, for "slow"
    rewrite: Callable[[Request, Reply], Reply] | None = None  # for "rewrite": S3's answer -> what is sent
    answer: Callable[[Request], Reply] | None = None  # for "answer": sent instead of asking S3
    # Called in the proxy's thread before the fault is applied, while the client waits for its answer:
    # the moment to look at what a reader would see, or to kill the client.
    on_inject: Callable[[Request], None] | None = None
    seed: int = 0
    matched: int = 0
    fired: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        needs = {"rewrite": self.rewrite, "answer": self.answer}
        if self.kind in needs and needs[self.kind] is None:
            raise ValueError(f"a {self.kind!r} rule needs its {self.kind}= function")

    def picks(self, request: Request) -> bool:
        if (
            (self.operation and request.operation != self.operation)
            or (self.path_contains and self.path_contains not in request.path)
            or (self.predicate and not self.predicate(request))
        ):
            return False
        self.matched += 1
        if self.matched <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        # Drawn for every eligible request, so which ones fire depends only on the seed and the order.
        if self._random.random() >= self.fraction:
            return False
        self.fired += 1
        return True


class FaultProxy(LoopbackService):
    bound_as, thread_name = "proxy", "s3-faults"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(self, upstream_url: str, *, port: int = 0, record: bool = False) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = port or free_port()
        self.rules: list[Rule] = []
        self.injected: Counter[str] = Counter()  # "<kind> <operation>" -> count
        self.record = record
        self.requests: list[Request] = []  # every request, when `record`
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def inject(self, kind: Kind, **selection: object) -> Rule:
        rule = Rule(kind, **selection)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def inject_first(self, kind: Kind, **selection: object) -> Rule:
        """As `inject`, but ahead of the rules already there (which would otherwise take the request)."""
        rule = Rule(kind, **selection)  # type: ignore[arg-type]
        with self._lock:
            self.rules.insert(0, rule)
        return rule

    def clear(self) -> None:
        """Drop every rule (counts are kept: they are the test's report)."""
        with self._lock:
            self.rules.clear()

    def _decide(self, request: Request) -> Rule | None:
        with self._lock:
            if self.record:
                self.requests.append(request)
            for rule in self.rules:
                if rule.picks(request):
                    self.injected[f"{rule.kind} {request.operation}"] += 1
                    return rule
        return None


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: one line per S3 request would drown the test output

    def _handle(self) -> None:
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, url.path, parse_qs(url.query, True), headers, read_body(self))
        rule = self.proxy._decide(request)
        kind = rule.kind if rule else None
        if rule and rule.on_inject:
            rule.on_inject(request)
        if kind == "reset":
            return self._reset()
        if kind == "error":
            return self._error()
        if kind == "slow":
            time.sleep(rule.delay)  # type: ignore[union-attr]
        if kind == "answer":
            reply = rule.answer(request)  # type: ignore[union-attr,misc]
        else:
            reply = forward(self.proxy.upstream, self.command, self.path, headers, request.body)
        if kind == "reset_after":
            return self._reset()  # S3 did the work; the client never hears of it
        if kind == "rewrite":
            reply = rule.rewrite(request, reply)  # type: ignore[union-attr,misc]
        if kind == "short" and self.command != "HEAD":
            relay_head(self, reply)
            self.wfile.write(reply[2][: len(reply[2]) // 2])
            self.wfile.flush()
            return self._reset()  # the rest never comes
        relay(self, reply)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def _error(self) -> None:
        data = _ERROR_BODY.format(n=self.proxy.total_injected).encode()
        self.send_response(500, "Internal Server Error")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST instead of FIN, which is what a dropped connection looks like.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
