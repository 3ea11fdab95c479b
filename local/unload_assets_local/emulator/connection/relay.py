"""The relay between a client and its own PostgreSQL backend: messages forwarded both ways, byte for byte.

The client's side is forwarded a buffer at a time and stops at a simple Query holding a statement the
emulator runs itself (UNLOAD, COPY from S3), at an Execute of a portal bound to a statement prepared from
one (PostgreSQL prepares a placeholder in its place), or at Terminate. Such a statement prepared with a
bind parameter is refused as Redshift's parser refuses it (42601, `syntax error at or near "$1"`).
Redshift-only SQL is put in PostgreSQL's words on the way. Requests are counted until their
ReadyForQuery, so that the connection (`client.py`) knows when the backend is idle and can run such a
statement on it.
"""

from __future__ import annotations

import asyncio
import struct

from unload_assets_local.emulator.protocol import wire
from unload_assets_local.emulator.sql.statements import emulated, first_parameter, holds_emulated
from unload_assets_local.emulator.sql.translate import statement_to_postgres

_U32_AT = struct.Struct("!I").unpack_from
_Q, _S, _F, _X, _E, _Z, _P, _B, _C = (ord(c) for c in "QSFXEZPBC")
# What PostgreSQL prepares in place of an UNLOAD or COPY sent with Parse: a statement without parameters
# or result rows, so Describe answers NoData as Redshift does for them. Its Execute never reaches
# PostgreSQL: the emulator runs the statement there.
_EMULATED_PLACEHOLDER = "DO $emulated$BEGIN END$emulated$"
# What PostgreSQL prepares in place of one with a bind parameter: a statement it refuses with Redshift's
# error, `syntax error at or near "$1"` (42601), padded so that the error's position is the client's.
_REFUSED_PARAMETER = "TABLE "
_COPY_END = (ord("c"), ord("f"))


class Relay:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.client = wire.MessageStream(reader)
        self.client_writer = writer
        self.backend: wire.MessageStream | None = None
        self.backend_writer: asyncio.StreamWriter | None = None
        self.status = b"I"
        self.pending = 0  # requests (Query, Sync, FunctionCall) still waiting for ReadyForQuery
        self._syncs_since_execute = 0
        self._idle = asyncio.Event()
        # The extended protocol: statements prepared from an UNLOAD or COPY, portals bound to them
        # (name -> SQL).
        self._emulated_statements: dict[bytes, str] = {}
        self._emulated_portals: dict[bytes, str] = {}
        self._hidden_ready = 0  # ReadyForQuery answers to the emulator's own Syncs, not for the client
        self._skip_to_sync = (
            False  # a statement the emulator ran failed in an extended batch: discard until the client's Sync
        )
        self._backend_gone = False

    def _forward_client_messages(self) -> tuple[str | None, bool, bool]:
        """Forward the whole messages buffered from the client, stopping at a statement the emulator runs
        itself (UNLOAD, COPY from S3) or Terminate.

        Returns that statement's SQL (or None), whether it came through the extended protocol (an Execute
        of a portal bound to a statement prepared from one), and whether the client terminated.
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
                if holds_emulated(sql):
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
                if portal in self._emulated_portals:
                    found, extended = self._emulated_portals[portal], True
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
        """A Parse: remembered (and replaced by the placeholder) if it prepares an UNLOAD or a COPY from S3;
        replaced by its PostgreSQL words if it uses Redshift-only SQL; None to forward it as it is."""
        name_end = buf.index(b"\0", pos + 5, end)
        query_end = buf.index(b"\0", name_end + 1, end)
        name, sql = buf[pos + 5 : name_end], buf[name_end + 1 : query_end].decode("utf-8", errors="replace")
        self._emulated_statements.pop(name, None)
        if emulated(sql):
            parameter = first_parameter(sql)
            if parameter is None:
                self._emulated_statements[name] = sql
                prepared = _EMULATED_PLACEHOLDER
            else:
                offset, written = parameter
                prepared = " " * max(0, offset - len(_REFUSED_PARAMETER)) + _REFUSED_PARAMETER + written
        else:
            translated = statement_to_postgres(sql)
            if translated is None:
                return None
            prepared = translated
        return wire.message(b"P", name + b"\0" + wire.cstr(prepared) + buf[query_end + 1 : end])

    def _bind(self, buf: bytes, pos: int, end: int) -> None:
        portal_end = buf.index(b"\0", pos + 5, end)
        statement_end = buf.index(b"\0", portal_end + 1, end)
        portal, statement = buf[pos + 5 : portal_end], buf[portal_end + 1 : statement_end]
        self._emulated_portals.pop(portal, None)
        if statement in self._emulated_statements:
            self._emulated_portals[portal] = self._emulated_statements[statement]

    def _close(self, buf: bytes, pos: int, end: int) -> None:
        which, name = buf[pos + 5], buf[pos + 6 : buf.index(b"\0", pos + 6, end)]
        (self._emulated_statements if which == ord("S") else self._emulated_portals).pop(name, None)

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
