"""A threaded HTTP server on 127.0.0.1, served from a daemon thread: the stand-ins' common shell."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, TypeVar

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
