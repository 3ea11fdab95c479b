"""Spreading the COPY stream over slices and partition folders, and feeding each lane's writer.

Rows go round-robin over the emulated slices (PARALLEL ON) or all to one lane (PARALLEL OFF). A lane
collects rows until it has a batch, then hands the batch to its writer on a worker thread, where
compression and uploads release the GIL; a lane has at most one batch in flight and one filling, so
memory stays flat however big the result is, and a slow S3 slows the read from PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

BATCH_BYTES = 1 << 20
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Characters Hive escapes in partition folder names (as %XX), besides control characters.
_HIVE_SPECIAL = frozenset("\"#%'*/:=?\\\x7f{[]^")
_I32_AT = struct.Struct("!i").unpack_from


def hive_folder(names: tuple[str, ...], values: tuple[bytes | None, ...]) -> str:
    """`col=value/...` for one partition; NULL is Hive's default partition."""
    parts = []
    for name, raw in zip(names, values, strict=True):
        if raw is None:
            text = HIVE_NULL
        else:
            value = raw.decode(errors="replace")
            text = "".join(f"%{ord(ch):02X}" if ch in _HIVE_SPECIAL or ord(ch) < 32 else ch for ch in value)
        parts.append(f"{name}={text}/")
    return "".join(parts)


class Lane:
    """One writer (`LineWriter` or `ParquetWriter`) driven from the event loop."""

    def __init__(self, writer: Any, pool: Executor) -> None:
        self.writer = writer
        self.pool = pool
        self.rows: list[Any] = []
        self.nbytes = 0
        self._job: asyncio.Future | None = None

    async def add(self, rows: list[bytes], nbytes: int) -> None:
        self.rows += rows
        self.nbytes += nbytes
        if self.nbytes >= BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self.rows:
            batch, self.rows, self.nbytes = self.rows, [], 0
            await self.submit(batch)

    async def submit(self, item: Any) -> None:
        """Hand `item` to the writer once the previous batch is done (errors surface here)."""
        await self._wait()
        self._job = asyncio.get_running_loop().run_in_executor(self.pool, self.writer.write, item)

    async def finish(self) -> None:
        await self.flush()
        await self._wait()
        self._job = asyncio.get_running_loop().run_in_executor(self.pool, self.writer.close)
        await self._wait()

    async def _wait(self) -> None:
        # Shielded: a cancelled UNLOAD must not mark the job done while its thread still writes (it may
        # be opening a multipart upload); `settle` then waits for the thread itself.
        if self._job is not None:
            await asyncio.shield(self._job)

    async def settle(self) -> None:
        """Wait for the batch in flight, ignoring its outcome (cleanup after a failure)."""
        if self._job is not None:
            await asyncio.gather(self._job, return_exceptions=True)


class Lanes:
    """All lanes of one UNLOAD, created on first use, keyed by (partition folder, slice)."""

    def __init__(self, make_writer: Callable[[int, str], Any], pool: Executor, slices: int) -> None:
        self.make_writer = make_writer
        self.pool = pool
        self.slices = slices
        self.lanes: dict[tuple[str, int], Lane] = {}
        self.rows = 0

    def lane(self, slice_no: int, folder: str = "") -> Lane:
        lane = self.lanes.get((folder, slice_no))
        if lane is None:
            lane = self.lanes[(folder, slice_no)] = Lane(self.make_writer(slice_no, folder), self.pool)
        return lane

    async def spread(self, rows: list[bytes]) -> None:
        """Round-robin `rows` over the slices, continuing where the last call stopped."""
        n, offset = self.slices, self.rows % self.slices
        self.rows += len(rows)
        if n == 1:
            await self.lane(0).add(rows, sum(map(len, rows)))
            return
        for slice_no in range(n):
            share = rows[(slice_no - offset) % n :: n]
            if share:
                await self.lane(slice_no).add(share, sum(map(len, share)))

    async def spread_partitioned(self, payloads: list[bytes], names: tuple[str, ...]) -> None:
        """Binary COPY tuples (line, partition values...) to the lanes of their partition folders."""
        folders: dict[tuple[bytes | None, ...], str] = {}
        batches: dict[tuple[str, int], list[bytes]] = {}
        n = self.slices
        for payload in payloads:
            size = _I32_AT(payload, 2)[0]
            line, pos, values = payload[6 : 6 + size], 6 + size, []
            for _ in names:
                size = _I32_AT(payload, pos)[0]
                values.append(None if size < 0 else payload[pos + 4 : pos + 4 + size])
                pos += 4 + max(size, 0)
            key = tuple(values)
            folder = folders.get(key) or folders.setdefault(key, hive_folder(names, key))
            batches.setdefault((folder, self.rows % n), []).append(line)
            self.rows += 1
        for (folder, slice_no), lines in batches.items():
            await self.lane(slice_no, folder).add(lines, sum(map(len, lines)))

    async def finish(self) -> None:
        await asyncio.gather(*(lane.finish() for lane in list(self.lanes.values())))

    async def settle(self) -> None:
        await asyncio.gather(*(lane.settle() for lane in list(self.lanes.values())))
