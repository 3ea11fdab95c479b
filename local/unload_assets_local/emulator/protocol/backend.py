"""The client's own PostgreSQL backend, driven by the proxy while it runs one UNLOAD.

Everything here runs on the client's session, so its temp tables, search_path and open transaction
apply. Notices and notifications the backend sends meanwhile go on to the client; ParameterStatus
messages are swallowed, because the settings the proxy changes for the UNLOAD are put back before the
client gets control again.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

from unload_assets_local.emulator.protocol import wire

_U32_AT = struct.Struct("!I").unpack_from
_I32_AT = struct.Struct("!i").unpack_from
_COPY_DATA = ord("d")
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\0"
_BINARY_TRAILER = b"\xff\xff"


class BackendError(Exception):
    """PostgreSQL refused a statement; `fields` is its ErrorResponse, passed on to the client as is."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields.get("M", "error"))
        self.fields = fields


class BackendSession:
    def __init__(
        self,
        stream: wire.MessageStream,
        writer: asyncio.StreamWriter,
        forward: Callable[[bytes], None],
        status: bytes,
        cancel: Callable[[], Awaitable[None]],
    ) -> None:
        self.stream = stream
        self.writer = writer
        self.forward = forward  # raw bytes to the client (notices, notifications)
        self.status = status  # transaction status from the last ReadyForQuery: I, T or E
        self.cancel = cancel  # sends PostgreSQL a CancelRequest for this session
        self.busy = False  # a statement was sent and its ReadyForQuery not read yet

    def _send(self, request: bytes) -> None:
        self.busy = True
        self.writer.write(request)

    async def settle(self) -> None:
        """After the proxy abandoned a statement midway: cancel it and read up to its ReadyForQuery."""
        if not self.busy:
            return
        await self.cancel()
        with contextlib.suppress(BackendError):
            await self._until_ready()

    async def query(self, sql: str) -> list[list[bytes | None]]:
        """Run `sql` (simple protocol) and return the data rows of its first result set."""
        self._send(wire.query(sql))
        return await self._until_ready()

    async def relay(self, sql: str) -> bytes:
        """Run `sql` (simple protocol) for the client: every message it brings, as the client would get
        them, but the ReadyForQuery (whose status is kept)."""
        self._send(wire.query(sql))
        return await self._messages_until_ready()

    async def copy_in(self, sql: str, chunks: AsyncIterator[bytes]) -> bytes:
        """`COPY ... FROM STDIN` fed from `chunks`: every message it brings but the ReadyForQuery. A chunk
        source that fails sends CopyFail (PostgreSQL then rolls the COPY back) and raises."""
        self._send(wire.query(sql))
        out = bytearray()
        while True:
            kind, payload = await self.stream.read()
            if kind == ord("G"):  # CopyInResponse
                break
            if kind == ord("Z"):  # refused before any data (no such table, ...)
                self.status, self.busy = payload[:1], False
                return bytes(out)
            out += wire.message(bytes([kind]), payload)
        try:
            async for chunk in chunks:
                self.writer.write(wire.message(b"d", chunk))
                await self.writer.drain()
        except BaseException as exc:
            self.writer.write(wire.message(b"f", wire.cstr(f"COPY source failed: {type(exc).__name__}")))
            with contextlib.suppress(BackendError):
                await self._until_ready()
            raise
        self.writer.write(wire.message(b"c"))
        return bytes(out) + await self._messages_until_ready()

    async def _messages_until_ready(self) -> bytes:
        """Every message up to ReadyForQuery, as the client would get them; the status is kept."""
        out = bytearray()
        while True:
            kind, payload = await self.stream.read()
            if kind == ord("Z"):
                self.status, self.busy = payload[:1], False
                return bytes(out)
            out += wire.message(bytes([kind]), payload)

    async def describe(self, sql: str) -> list[wire.Column] | None:
        """The result columns of `sql` without running it; None when it returns no rows."""
        self._send(wire.parse_describe_sync(sql))
        columns: list[wire.Column] | None = None

        def on_description(kind: int, payload: bytes) -> None:
            nonlocal columns
            if kind == ord("T"):
                columns = wire.parse_row_description(payload)

        await self._until_ready(on_description)
        return columns

    async def copy_rows(self, sql: str, *, binary: bool, skip: int) -> AsyncIterator[list[bytes]]:
        """Run `COPY ... TO STDOUT` and yield its rows in batches, each with `skip` leading bytes cut.

        One CopyData message is one row, so the batches split only between rows. The loop below is the
        emulator's hot path: it touches each row once and keeps no more than a network read in memory.
        """
        self._send(wire.query(sql))
        await self._until_copy_out()
        stream = self.stream
        if binary:
            first = await self._first_binary_row(skip)
            if first is None:
                await self._until_ready()
                return
            yield [first]
        while True:
            buf, pos = stream.buf, stream.pos
            limit = len(buf)
            rows: list[bytes] = []
            add = rows.append
            while pos + 5 <= limit and buf[pos] == _COPY_DATA:
                end = pos + 1 + _U32_AT(buf, pos + 1)[0]
                if end > limit:
                    break
                add(buf[pos + 5 + skip : end])
                pos = end
            stream.pos = pos
            if binary and rows and rows[-1] in (b"", _BINARY_TRAILER[skip:]):
                rows.pop()  # the int16 -1 that ends a binary COPY (lines are never empty)
            if rows:
                yield rows
            if pos + 5 <= limit and buf[pos] != _COPY_DATA:
                kind, payload = await stream.read()
                if kind == ord("c"):  # CopyDone
                    await self._until_ready()
                    return
                await self._side_message(kind, payload)
            else:
                await stream.fill()

    async def _first_binary_row(self, skip: int) -> bytes | None:
        """Strip the binary COPY header; the first row (skip applied), or None if there are no rows."""
        while True:
            kind, payload = await self.stream.read()
            if kind == _COPY_DATA:
                break
            await self._side_message(kind, payload)
        if not payload.startswith(_BINARY_SIGNATURE):
            raise wire.ProtocolError("binary COPY output without its signature")
        extension = _I32_AT(payload, 15)[0]
        rest = payload[19 + extension :]
        if not rest:  # the header came alone: the next message is the first row or the trailer
            kind, rest = await self.stream.read()
            if kind != _COPY_DATA:
                await self._side_message(kind, rest)
                return None
        if rest == _BINARY_TRAILER:
            await self._drain_copy()
            return None
        return rest[skip:]

    async def _drain_copy(self) -> None:
        while True:
            kind, payload = await self.stream.read()
            if kind == ord("c"):
                return
            await self._side_message(kind, payload)

    async def _until_copy_out(self) -> None:
        while True:
            kind, payload = await self.stream.read()
            if kind == ord("H"):
                return
            await self._side_message(kind, payload)

    async def _until_ready(self, on_other: Callable[[int, bytes], None] | None = None) -> list:
        """Consume messages up to ReadyForQuery; raise `BackendError` if one was an ErrorResponse."""
        rows: list[list[bytes | None]] = []
        error: dict[str, str] | None = None
        results = 0
        while True:
            kind, payload = await self.stream.read()
            if kind == ord("Z"):
                self.status = payload[:1]
                self.busy = False
                break
            if kind == ord("D"):
                if results == 0:
                    rows.append(wire.parse_data_row(payload))
            elif kind == ord("C"):
                results += 1
            elif kind == ord("E"):
                error = error or wire.parse_fields(payload)
            elif kind in (ord("N"), ord("A")):
                self.forward(wire.message(bytes([kind]), payload))
            elif on_other is not None:
                on_other(kind, payload)
        if error is not None:
            raise BackendError(error)
        return rows

    async def _side_message(self, kind: int, payload: bytes) -> None:
        """A message other than the one expected next: pass it on, or fail the statement."""
        if kind in (ord("N"), ord("A")):
            self.forward(wire.message(bytes([kind]), payload))
        elif kind == ord("E"):
            fields = wire.parse_fields(payload)
            await self._until_ready()
            raise BackendError(fields)
        elif kind != ord("S"):
            raise wire.ProtocolError(f"unexpected message {chr(kind)!r} from PostgreSQL during UNLOAD")
