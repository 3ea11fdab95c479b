"""One client connection: relayed byte for byte to its own PostgreSQL backend, except UNLOAD.

Startup and authentication (SCRAM included) pass through untouched. Then two pumps run: client to
backend (which looks at each simple Query for UNLOAD) and backend to client. For an UNLOAD the proxy
waits until every earlier request has its ReadyForQuery, stops the backend pump, drives the backend
itself, answers the client, and starts the pump again. While an UNLOAD runs the client is watched: if
it disconnects, the UNLOAD is cancelled (uploads aborted, files deleted) and the backend's query too.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from unload_assets.local.emulator import executor, wire
from unload_assets.local.emulator.backend import BackendSession
from unload_assets.local.emulator.faults import ConnectionDropped
from unload_assets.local.emulator.parser import is_unload
from unload_assets.local.emulator.session import Session
from unload_assets.local.emulator.startup import cancel_packet, send_cancel, start_session

log = logging.getLogger(__name__)
_U32_AT = struct.Struct("!I").unpack_from
_Q, _S, _F, _X, _E, _Z, _P = (ord(c) for c in "QSFXEZP")
_EXTENDED_REFUSAL = (
    "DO $unload$BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = 'UNLOAD: the emulator runs UNLOAD "
    "only as a simple query (not as a prepared statement or with parameters)'; END$unload$"
)
_COPY_END = (ord("c"), ord("f"))


class ClientGone(Exception):
    pass


class ClientConnection:
    def __init__(
        self,
        services: executor.Services,
        pg_host: str,
        pg_port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.services = services
        self.pg_address = (pg_host, pg_port)
        self.client = wire.MessageStream(reader)
        self.client_writer = writer
        self.backend: wire.MessageStream | None = None
        self.backend_writer: asyncio.StreamWriter | None = None
        self.status = b"I"
        self.pending = 0  # requests (Query, Sync, FunctionCall) still waiting for ReadyForQuery
        self._syncs_since_execute = 0
        self._idle = asyncio.Event()
        self._pump: asyncio.Task | None = None
        self._backend_gone = False
        self.key = b""  # BackendKeyData: process id + secret, for CancelRequest
        self.session = Session("", "", 0)

    async def run(self) -> None:
        try:
            started = await start_session(
                self.client,
                self.client_writer,
                self.pg_address,
                self.services.catalog,
                credentials=self.services.credentials,
                backend_login=self.services.backend_login,
                tls=self.services.tls,
                logins=self.services.logins,
            )
            if started is not None:
                self.backend, self.backend_writer = started.backend, started.backend_writer
                self.status, self.key, self.session = started.status, started.key, started.session
                self._pump = asyncio.create_task(self._pump_backend())
                await self._pump_client()
        except (ConnectionError, asyncio.IncompleteReadError, wire.ProtocolError, ClientGone, OSError) as exc:
            log.debug("client connection ended: %s", exc)
        finally:
            if self._pump is not None:
                self._pump.cancel()
                await asyncio.gather(self._pump, return_exceptions=True)
            for writer in (self.backend_writer, self.client_writer):
                if writer is not None:
                    writer.close()

    # ---- relaying ------------------------------------------------------------------------------
    async def _pump_client(self) -> None:
        while True:
            unload_sql, terminate = self._forward_client_messages()
            assert self.backend_writer is not None
            await self.backend_writer.drain()
            if terminate:
                return
            if unload_sql is not None:
                await self._run_unload(unload_sql)
                continue
            try:
                await self.client.fill()
            except ConnectionError:
                self.backend_writer.write(wire.message(b"X"))
                return

    def _forward_client_messages(self) -> tuple[str | None, bool]:
        """Forward the whole messages buffered from the client, stopping at an UNLOAD or Terminate."""
        stream, out = self.client, self.backend_writer
        assert out is not None
        buf, pos = stream.buf, stream.pos
        start, limit = pos, len(buf)
        found: str | None = None
        terminate = False
        while pos + 5 <= limit:
            end = pos + 1 + _U32_AT(buf, pos + 1)[0]
            if end > limit:
                break
            kind = buf[pos]
            if kind == _Q:
                sql = buf[pos + 5 : end - 1].decode("utf-8", errors="replace")
                if is_unload(sql):
                    found = sql
                    break
                self._request()
                self._syncs_since_execute = 0
            elif kind in (_S, _F):
                self._request()
                self._syncs_since_execute += kind == _S
            elif kind == _E:
                self._syncs_since_execute = 0
            elif kind == _P:
                refusal = _refuse_prepared_unload(buf, pos, end)
                if refusal is not None:
                    out.write(buf[start:pos])
                    out.write(refusal)
                    start = end
            elif kind in _COPY_END:
                # Syncs sent after the Execute that started COPY FROM STDIN were ignored in copy-in mode.
                self.pending -= self._syncs_since_execute
                self._syncs_since_execute = 0
            elif kind == _X:
                terminate = True
                pos = end
                break
            pos = end
        out.write(buf[start:pos])
        stream.pos = end if found is not None else pos
        return found, terminate

    def _request(self) -> None:
        self.pending += 1
        self._idle.clear()

    async def _pump_backend(self) -> None:
        stream = self.backend
        assert stream is not None
        while True:
            buf, pos = stream.buf, stream.pos
            start, limit = pos, len(buf)
            ready, status = 0, b""
            while pos + 5 <= limit:
                end = pos + 1 + _U32_AT(buf, pos + 1)[0]
                if end > limit:
                    break
                if buf[pos] == _Z:
                    ready, status = ready + 1, buf[pos + 5 : pos + 6]
                pos = end
            if pos > start:
                stream.pos = pos
                self.client_writer.write(buf[start:pos])
                if ready:
                    self.status = status
                    self.pending = max(0, self.pending - ready)
                    if self.pending == 0:
                        self._idle.set()
                await self.client_writer.drain()
            try:
                await stream.fill()
            except ConnectionError:  # the backend is gone: so is the client's session
                self._backend_gone = True
                self._idle.set()
                self.client_writer.close()
                return

    # ---- UNLOAD ----------------------------------------------------------------------------------
    async def _run_unload(self, sql: str) -> None:
        while self.pending > 0 and not self._backend_gone:
            await self._idle.wait()
        if self._backend_gone:
            raise ConnectionResetError("the PostgreSQL backend closed the connection")
        assert self._pump is not None and self.backend_writer is not None
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)
        self._pump = None
        assert self.backend is not None
        backend = BackendSession(
            self.backend, self.backend_writer, self.client_writer.write, self.status, self._cancel_backend
        )
        task = asyncio.create_task(executor.unload(self.services, backend, self.session, sql))
        try:
            await self._watch_client(task)
        except (ClientGone, asyncio.CancelledError):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self._cancel_backend()
            raise
        try:
            response = task.result()
        except ConnectionDropped:
            self.client_writer.transport.abort()  # no answer, no goodbye: the client sees a dead socket
            raise
        self.status = backend.status
        self.client_writer.write(response)
        await self.client_writer.drain()
        self._pump = asyncio.create_task(self._pump_backend())

    async def _cancel_backend(self) -> None:
        if self.key:
            await send_cancel(self.pg_address, cancel_packet(self.key))

    async def _watch_client(self, task: asyncio.Task) -> None:
        """Wait for `task`, keeping what the client sends meanwhile; `ClientGone` if it disconnects."""
        stream = self.client
        while not task.done():
            read = asyncio.ensure_future(stream.reader.read(wire.READ_CHUNK))
            done, _ = await asyncio.wait({task, read}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
            result = (await asyncio.gather(read, return_exceptions=True))[0]
            if isinstance(result, bytes) and result:
                stream.buf, stream.pos = stream.buf[stream.pos :] + result, 0
            elif read in done:
                raise ClientGone("client disconnected during UNLOAD")


def _refuse_prepared_unload(buf: bytes, pos: int, end: int) -> bytes | None:
    """A Parse of an UNLOAD, rewritten into a statement that fails with a clear message when executed."""
    name_end = buf.index(b"\0", pos + 5, end)
    query_end = buf.index(b"\0", name_end + 1, end)
    if not is_unload(buf[name_end + 1 : query_end].decode("utf-8", errors="replace")):
        return None
    return wire.message(
        b"P", buf[pos + 5 : name_end + 1] + wire.cstr(_EXTENDED_REFUSAL) + buf[query_end + 1 : end]
    )
