"""From `COPY ... TO STDOUT` to the files: what one UNLOAD writes (its `Plan`), the two ways to feed it
(lines, Parquet), and the lanes that spread the rows over slices and partition folders.

Rows go round-robin over the emulated slices (PARALLEL ON) or all to one lane (PARALLEL OFF). A lane
collects rows until it has a batch, then hands the batch to its writer on a worker thread, where
compression and uploads release the GIL; a lane has at most one batch in flight and one filling, so
memory stays flat however big the result is, and a slow S3 slows the read from PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from unload_assets_local.emulator.protocol.backend import BackendSession
from unload_assets_local.emulator.unload import parquet, render
from unload_assets_local.emulator.unload.columns import ColumnInfo
from unload_assets_local.emulator.unload.command import UnloadCommand, UnloadError
from unload_assets_local.emulator.unload.writers import LineWriter, Output, hive_folder

BATCH_BYTES = 1 << 20
_I32_AT = struct.Struct("!i").unpack_from


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


# ---- feeding the lanes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    cmd: UnloadCommand
    columns: list[ColumnInfo]  # the query's result columns
    parts: list[int]  # indexes of the PARTITION BY columns
    statement: str  # the COPY to run
    binary: bool

    @classmethod
    def build(cls, cmd: UnloadCommand, select: str, columns: list[ColumnInfo]) -> Plan:
        parts = partition_indexes(cmd, columns)
        statement, binary = render.copy_statement(cmd, select, columns, parts)
        return cls(cmd, columns, parts, statement, binary)

    @property
    def body(self) -> list[ColumnInfo]:
        """The columns that go into the files (partition columns only with INCLUDE)."""
        return [c for i, c in enumerate(self.columns) if i not in self.parts or self.cmd.partition_include]

    @property
    def partition_names(self) -> tuple[str, ...]:
        return tuple(self.columns[i].name for i in self.parts)

    def header(self) -> bytes | None:
        return render.header_line(self.cmd, [c.name for c in self.body]) if self.cmd.header else None


def partition_indexes(cmd: UnloadCommand, columns: list[ColumnInfo]) -> list[int]:
    names = [c.name for c in columns]
    indexes = []
    for name in cmd.partition_by:
        if name not in names:
            raise UnloadError(f'UNLOAD: PARTITION BY column "{name}" is not a column of the query')
        indexes.append(names.index(name))
    if indexes and not cmd.partition_include and len(indexes) == len(columns):
        raise UnloadError("UNLOAD: PARTITION BY needs at least one column that is not a partition column")
    return indexes


async def stream_lines(
    backend: BackendSession,
    plan: Plan,
    output: Output,
    pool: Executor,
    slices: int,
    keep: Callable[[Lanes], None],
) -> int:
    """Text, CSV and JSON: rows are whole output lines already; spread them over the lanes."""
    lanes = Lanes(partial(LineWriter, output), pool, slices)
    keep(lanes)
    names = plan.partition_names
    skip = 6 if plan.binary and not names else 0  # int16 field count + int32 length of the line
    async for batch in backend.copy_rows(plan.statement, binary=plan.binary, skip=skip):
        if names:
            await lanes.spread_partitioned(batch, names)
        else:
            await lanes.spread(batch)
    if lanes.rows == 0 and plan.cmd.format != "json" and not names:
        await asyncio.to_thread(lanes.lane(0).writer.touch)  # Redshift writes one empty file
    await lanes.finish()
    return lanes.rows


async def stream_parquet(
    backend: BackendSession, plan: Plan, output: Output, slices: int, keep: Callable[[Lanes], None]
) -> int:
    """Parquet: CSV batches become Arrow tables, one row group each, batches taking turns over slices."""
    parquet.require_pyarrow()
    # Arrow's allocator keeps memory per thread: one thread for this UNLOAD's Arrow work keeps the
    # footprint flat (batches are converted and written one at a time anyway).
    arrow = ThreadPoolExecutor(1, thread_name_prefix="unload-parquet")
    try:
        converter = parquet.CsvBatches(plan.body, len(plan.parts))
        lanes = Lanes(partial(parquet.ParquetWriter, output, converter.schema), arrow, slices)
        keep(lanes)
        limit = min(plan.cmd.rowgroupsize or parquet.DEFAULT_ROWGROUP, plan.cmd.maxfilesize)
        pending = bytearray()
        batches = 0

        async def flush() -> None:
            nonlocal pending, batches
            data, pending = pending, bytearray()
            table, values = await asyncio.get_running_loop().run_in_executor(arrow, converter.table, data)
            slice_no, batches = batches % slices, batches + 1
            for folder, piece in parquet.split(table, values, plan.partition_names):
                await lanes.lane(slice_no, folder).submit(piece)

        async for rows in backend.copy_rows(plan.statement, binary=False, skip=0):
            pending += b"".join(rows)
            lanes.rows += len(rows)
            if len(pending) >= limit:
                await flush()
        if pending or (lanes.rows == 0 and not plan.parts):
            await flush()  # zero rows: one file holding just the schema
        await lanes.finish()
        return lanes.rows
    finally:
        arrow.shutdown(wait=False)
