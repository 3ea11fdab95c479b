"""PostgreSQL v3 wire protocol: framing, and the few messages the proxy builds or reads itself.

Every message after startup is a type byte, a big-endian int32 length that counts itself, and a payload.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from dataclasses import dataclass

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32_AT = struct.Struct("!I").unpack_from
_COLUMN = struct.Struct("!IhIhih")
# A read may return this much at once: COPY rows arrive as one message each, so bigger reads mean
# fewer trips through the event loop.
READ_CHUNK = 1 << 18
STREAM_LIMIT = 1 << 20


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    typmod: int


class ProtocolError(Exception):
    """The peer sent something that is not the PostgreSQL protocol."""


# ---- building messages ---------------------------------------------------------------------------


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + _I32.pack(len(payload) + 4) + payload


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def query(sql: str) -> bytes:
    return message(b"Q", cstr(sql))


def parse_describe_sync(sql: str) -> bytes:
    """Parse `sql` as the unnamed statement and describe it, without executing it."""
    return message(b"P", cstr("") + cstr(sql) + _I16.pack(0)) + message(b"D", b"S" + cstr("")) + message(b"S")


def error_response(text: str, *, code: str = "XX000", severity: str = "ERROR") -> bytes:
    return fields_message(b"E", {"S": severity, "V": severity, "C": code, "M": text})


def notice_response(text: str, *, severity: str = "INFO", code: str = "00000") -> bytes:
    return fields_message(b"N", {"S": severity, "V": severity, "C": code, "M": text})


def fields_message(kind: bytes, fields: dict[str, str]) -> bytes:
    body = b"".join(key.encode() + cstr(value) for key, value in fields.items())
    return message(kind, body + b"\0")


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


# ---- reading messages ----------------------------------------------------------------------------


def split_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type byte, payload) of each whole message in `data`, a run of backend messages."""
    pos = 0
    while pos + 5 <= len(data):
        end = pos + 1 + _I32.unpack_from(data, pos + 1)[0]
        yield data[pos], data[pos + 5 : end]
        pos = end


def first_error(data: bytes) -> dict[str, str] | None:
    """The fields of the first ErrorResponse in a run of backend messages, if any."""
    return next((parse_fields(payload) for kind, payload in split_messages(data) if kind == ord("E")), None)


def parse_fields(payload: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse, keyed by their one-letter codes."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def parse_row_description(payload: bytes) -> list[Column]:
    count = _I16.unpack_from(payload, 0)[0]
    pos, columns = 2, []
    for _ in range(count):
        end = payload.index(b"\0", pos)
        name = payload[pos:end].decode(errors="replace")
        _table, _attnum, type_oid, _size, typmod, _fmt = _COLUMN.unpack_from(payload, end + 1)
        columns.append(Column(name, type_oid, typmod))
        pos = end + 1 + _COLUMN.size
    return columns


def parse_data_row(payload: bytes) -> list[bytes | None]:
    count = _I16.unpack_from(payload, 0)[0]
    pos, values = 2, list[bytes | None]()
    for _ in range(count):
        size = _I32.unpack_from(payload, pos)[0]
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(payload[pos : pos + size])
            pos += size
    return values


class MessageStream:
    """Whole messages from one side of a connection; `buf[pos:]` holds what was read past the last one.

    The COPY fast path in `backend.py` works on `buf`/`pos` directly.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buf = b""
        self.pos = 0

    async def fill(self) -> None:
        """Read at least one more byte; `ConnectionError` at end of stream."""
        data = await self.reader.read(READ_CHUNK)
        if not data:
            raise ConnectionResetError("connection closed by peer")
        self.buf = self.buf[self.pos :] + data if self.pos < len(self.buf) else data
        self.pos = 0

    async def read(self) -> tuple[int, bytes]:
        """The next message as (type byte, payload)."""
        while True:
            buf, pos = self.buf, self.pos
            if pos + 5 <= len(buf):
                end = pos + 1 + _U32_AT(buf, pos + 1)[0]
                if end <= len(buf):
                    self.pos = end
                    return buf[pos], buf[pos + 5 : end]
            await self.fill()

    async def read_raw(self) -> tuple[int, bytes]:
        """The next message as (type byte, the whole message including its header)."""
        kind, payload = await self.read()
        return kind, bytes([kind]) + _I32.pack(len(payload) + 4) + payload


async def read_startup(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """A startup-phase packet (no type byte): (code, whole packet)."""
    head = await reader.readexactly(8)
    length, code = struct.unpack("!ii", head)
    if not 8 <= length <= 10_000:
        raise ProtocolError(f"invalid startup packet length {length}")
    return code, head + await reader.readexactly(length - 8)


def startup_params(packet: bytes) -> dict[str, str]:
    parts = packet[8:].split(b"\0")
    return {
        parts[i].decode(errors="replace"): parts[i + 1].decode(errors="replace")
        for i in range(0, len(parts) - 1, 2)
        if parts[i]
    }


def startup_packet(version: int, params: dict[str, str]) -> bytes:
    """A StartupMessage: the inverse of `read_startup` + `startup_params`."""
    body = _I32.pack(version) + b"".join(cstr(key) + cstr(value) for key, value in params.items()) + b"\0"
    return _I32.pack(len(body) + 4) + body
