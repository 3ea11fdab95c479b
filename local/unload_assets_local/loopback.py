"""A threaded HTTP server on 127.0.0.1, served from a daemon thread: the stand-ins' common shell, and
what the two that sit in front of moto (the S3 fault proxy, the AWS credentials stand-in) share to
read a request, forward it upstream and relay the answer."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, TypeVar

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "expect", "te", "upgrade", "proxy-connection"}
)
Headers = list[tuple[str, str]]
Reply = tuple[int, Headers, bytes]  # status, headers, body

_Service = TypeVar("_Service", bound="LoopbackService")


class LoopbackServer:
    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        # A short poll interval keeps close() (shutdown waits for one poll) fast in tests.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class LoopbackService:
    """The lifecycle every stand-in shares: `start()` serves `handler_class()` on `self.port`, with the
    service bound to the handler as attribute `bound_as`; `stop()`; and use as a context manager."""

    bound_as: ClassVar[str]
    thread_name: ClassVar[str]
    port: int
    _server: LoopbackServer | None = None

    def start(self: _Service) -> _Service:
        bound = type(f"_Bound{type(self).__name__}", (self.handler_class(),), {self.bound_as: self})
        self._server = LoopbackServer(self.port, bound, name=self.thread_name)
        return self

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self: _Service) -> _Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, chunked (boto3 streams some uploads that way) or by Content-Length."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def forward(
    upstream: tuple[str, int], method: str, path: str, headers: Mapping[str, str], body: bytes
) -> Reply:
    """The request sent on to `upstream` with the caller's headers (hop-by-hop ones aside; without a Host,
    http.client names the upstream) and the body's own Content-Length; the upstream's answer."""
    conn = http.client.HTTPConnection(*upstream, timeout=120)
    try:
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}}
        conn.request(method, path, body=body, headers={**sent, "Content-Length": str(len(body))})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def relay(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    """An upstream answer to the client as it came."""
    relay_head(handler, reply)
    if handler.command != "HEAD":
        handler.wfile.write(reply[2])


def relay_head(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    """The status line and headers of an upstream answer (its Server and Date too), Content-Length that
    of its body (a HEAD keeps the upstream's, which describes the object); the caller writes the body."""
    status, headers, body = reply
    handler.send_response_only(status)
    for name, value in headers:
        if name.lower() not in HOP_BY_HOP | {"content-length"}:
            handler.send_header(name, value)
    length = next((v for n, v in headers if n.lower() == "content-length"), None)
    handler.send_header("Content-Length", length if handler.command == "HEAD" and length else str(len(body)))
    handler.end_headers()
