"""One client connection: relayed byte for byte to its own PostgreSQL backend, except UNLOAD.

Startup and authentication (SCRAM included) pass through untouched, except for Redshift's temporary
IAM users, whom the emulator authenticates itself (see `startup.py`). Then two pumps run: client to
backend (which looks at each simple Query for UNLOAD) and backend to client. For an UNLOAD the proxy
waits until every earlier request has its ReadyForQuery, stops the backend pump, drives the backend
itself, answers the client, and starts the pump again. While an UNLOAD runs the client is watched: if
it disconnects, the UNLOAD is cancelled (uploads aborted, files deleted) and the backend's query too.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from unload_assets_local.emulator import executor, wire
from unload_assets_local.emulator.backend import BackendSession
from unload_assets_local.emulator.faults import ConnectionDropped
from unload_assets_local.emulator.services import Services
from unload_assets_local.emulator.session import Session
from unload_assets_local.emulator.startup import cancel_packet, send_cancel, start_session
from unload_assets_local.emulator.statements import holds_unload, is_unload, split_statements
from unload_assets_local.emulator.transpile import statement_to_postgres

log = logging.getLogger(__name__)
_U32_AT = struct.Struct("!I").unpack_from
_Q, _S, _F, _X, _E, _Z, _P, _B, _C = (ord(c) for c in "QSFXEZPBC")
# What PostgreSQL prepares in place of an UNLOAD sent with Parse: a statement without parameters or
# result rows, so Describe answers NoData as Redshift does for UNLOAD. Its Execute never reaches
# PostgreSQL: the emulator runs the UNLOAD there.
_UNLOAD_PLACEHOLDER = "DO $unload$BEGIN END$unload$"
_COPY_END = (ord("c"), ord("f"))


class ClientGone(Exception):
    pass


class ClientConnection:
    def __init__(
        self,
        services: Services,
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
        # The extended protocol: statements prepared from an UNLOAD, portals bound to them (name -> SQL).
        self._unload_statements: dict[bytes, str] = {}
        self._unload_portals: dict[bytes, str] = {}
        self._hidden_ready = 0  # ReadyForQuery answers to the emulator's own Syncs, not for the client
        self._skip_to_sync = False  # an UNLOAD failed in an extended batch: discard until the client's Sync
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
            unload_sql, extended, terminate = self._forward_client_messages()
            assert self.backend_writer is not None
            await self.backend_writer.drain()
            if terminate:
                return
            if unload_sql is not None:
                await self._run_unload(unload_sql, extended=extended)
                continue
            try:
                await self.client.fill()
            except ConnectionError:
                self.backend_writer.write(wire.message(b"X"))
                return

    def _forward_client_messages(self) -> tuple[str | None, bool, bool]:
        """Forward the whole messages buffered from the client, stopping at an UNLOAD or Terminate.

        Returns the UNLOAD's SQL (or None), whether it came through the extended protocol (an Execute
        of a portal bound to a statement prepared from an UNLOAD), and whether the client terminated.
        """
        stream, out = self.client, self.backend_writer
        assert out is not None
        buf, pos = stream.buf, stream.pos
        start, limit = pos, len(buf)
        found: str | None = None
        extended = terminate = False
        while pos + 5 <= limit:
            end = pos + 1 + _U32_AT(buf, pos + 1)[0]
            if end > limit:
                break
            kind = buf[pos]
            if self._skip_to_sync and kind != _S:
                out.write(buf[start:pos])  # what came before; this message is discarded
                start = pos = end
                continue
            if kind == _Q:
                sql = buf[pos + 5 : end - 1].decode("utf-8", errors="replace")
                if holds_unload(sql):
                    found = sql
                    break
                translated = statement_to_postgres(sql)
                if translated is not None:  # Redshift-only SQL, in PostgreSQL's words
                    out.write(buf[start:pos] + wire.query(translated))
                    start = end
                self._request()
                self._syncs_since_execute = 0
            elif kind in (_S, _F):
                self._skip_to_sync = False
                self._request()
                self._syncs_since_execute += kind == _S
            elif kind == _E:
                self._syncs_since_execute = 0
                portal = buf[pos + 5 : buf.index(b"\0", pos + 5, end)]
                if portal in self._unload_portals:
                    found, extended = self._unload_portals[portal], True
                    # What came before must be answered first: a Sync of the emulator's own makes
                    # PostgreSQL answer it (its ReadyForQuery is not passed on).
                    out.write(buf[start:pos] + wire.message(b"S"))
                    self._request()
                    self._hidden_ready += 1
                    start = end
                    break
            elif kind == _P:
                parse = self._prepare(buf, pos, end)
                if parse is not None:
                    out.write(buf[start:pos])
                    out.write(parse)
                    start = end
            elif kind == _B:
                self._bind(buf, pos, end)
            elif kind == _C:
                self._close(buf, pos, end)
            elif kind in _COPY_END:
                # Syncs sent after the Execute that started COPY FROM STDIN were ignored in copy-in mode.
                self.pending -= self._syncs_since_execute
                self._syncs_since_execute = 0
            elif kind == _X:
                terminate = True
                pos = end
                break
            pos = end
        if not extended:
            out.write(buf[start:pos])
        stream.pos = end if found is not None else pos
        return found, extended, terminate

    def _prepare(self, buf: bytes, pos: int, end: int) -> bytes | None:
        """A Parse: remembered (and replaced by the placeholder) if it prepares an UNLOAD."""
        name_end = buf.index(b"\0", pos + 5, end)
        query_end = buf.index(b"\0", name_end + 1, end)
        name, sql = buf[pos + 5 : name_end], buf[name_end + 1 : query_end].decode("utf-8", errors="replace")
        self._unload_statements.pop(name, None)
        if not is_unload(sql):
            translated = statement_to_postgres(sql)
            if translated is None:
                return None
            return wire.message(b"P", name + b"\0" + wire.cstr(translated) + buf[query_end + 1 : end])
        self._unload_statements[name] = sql
        return wire.message(b"P", name + b"\0" + wire.cstr(_UNLOAD_PLACEHOLDER) + buf[query_end + 1 : end])

    def _bind(self, buf: bytes, pos: int, end: int) -> None:
        portal_end = buf.index(b"\0", pos + 5, end)
        statement_end = buf.index(b"\0", portal_end + 1, end)
        portal, statement = buf[pos + 5 : portal_end], buf[portal_end + 1 : statement_end]
        self._unload_portals.pop(portal, None)
        if statement in self._unload_statements:
            self._unload_portals[portal] = self._unload_statements[statement]

    def _close(self, buf: bytes, pos: int, end: int) -> None:
        which, name = buf[pos + 5], buf[pos + 6 : buf.index(b"\0", pos + 6, end)]
        (self._unload_statements if which == ord("S") else self._unload_portals).pop(name, None)

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
                    if self._hidden_ready:  # the answer to the emulator's own Sync: not the client's
                        self._hidden_ready -= 1
                        self.client_writer.write(buf[start:pos])
                        start = end
                pos = end
            if pos > stream.pos:
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
    async def _run_unload(self, sql: str, *, extended: bool = False) -> None:
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
        statements = split_statements(sql)
        if len(statements) > 1:
            work = executor.batch(self.services, backend, self.session, statements)
        else:
            work = executor.run_one(self.services, backend, self.session, sql)
        task = asyncio.create_task(work)
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
        if extended:
            # The client's Sync, still to come, brings ReadyForQuery; after an error, PostgreSQL's
            # rule: everything up to that Sync is discarded.
            response = response[: -len(wire.ready_for_query(b"I"))]
            self._skip_to_sync = executor.has_error(response)
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
