"""One client connection: relayed byte for byte to its own PostgreSQL backend, except UNLOAD and COPY from S3.

Startup and authentication (SCRAM included) pass through untouched, except for Redshift's temporary
IAM users, whom the emulator authenticates itself (see `login/startup.py`). Then two pumps run: client to
backend (which looks at each simple Query, and each Execute, for a statement the emulator runs itself:
UNLOAD or COPY from S3; "an UNLOAD" below) and backend to client. For an UNLOAD the proxy
waits until every earlier request has its ReadyForQuery, stops the backend pump, drives the backend
itself, answers the client, and starts the pump again. While an UNLOAD runs the client is watched: if
it disconnects, the UNLOAD is cancelled (uploads aborted, files deleted) and the backend's query too.

What the pumps forward, rewrite or stop at, and the requests they count, is `relay.py`'s.
"""

from __future__ import annotations

import asyncio
import logging

from unload_assets_local.emulator.connection import executor
from unload_assets_local.emulator.connection.relay import Relay
from unload_assets_local.emulator.faults import ConnectionDropped
from unload_assets_local.emulator.login.startup import cancel_packet, send_cancel, start_session
from unload_assets_local.emulator.protocol import wire
from unload_assets_local.emulator.protocol.backend import BackendSession
from unload_assets_local.emulator.protocol.session import Session
from unload_assets_local.emulator.services import Services
from unload_assets_local.emulator.sql.statements import split_statements

log = logging.getLogger(__name__)


class ClientGone(Exception):
    pass


class ClientConnection(Relay):
    def __init__(
        self,
        services: Services,
        pg_host: str,
        pg_port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(reader, writer)
        self.services = services
        self.pg_address = (pg_host, pg_port)
        self._pump: asyncio.Task | None = None
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
            emulated_sql, extended, terminate = self._forward_client_messages()
            assert self.backend_writer is not None
            await self.backend_writer.drain()
            if terminate:
                return
            if emulated_sql is not None:
                await self._run_emulated(emulated_sql, extended=extended)
                continue
            try:
                await self.client.fill()
            except ConnectionError:
                self.backend_writer.write(wire.message(b"X"))
                return

    # ---- UNLOAD and COPY from S3 -------------------------------------------------------------------
    async def _run_emulated(self, sql: str, *, extended: bool = False) -> None:
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
                raise ClientGone("client disconnected during UNLOAD or COPY")
