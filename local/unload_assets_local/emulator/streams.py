"""From `COPY ... TO STDOUT` to the lanes: what one UNLOAD writes, and the two ways to feed it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from unload_assets_local.emulator import parquet_out, sqlgen
from unload_assets_local.emulator.backend import BackendSession
from unload_assets_local.emulator.columns import ColumnInfo
from unload_assets_local.emulator.command import UnloadCommand, UnloadError
from unload_assets_local.emulator.lanes import Lanes
from unload_assets_local.emulator.writers import LineWriter, Output


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
        statement, binary = sqlgen.copy_statement(cmd, select, columns, parts)
        return cls(cmd, columns, parts, statement, binary)

    @property
    def body(self) -> list[ColumnInfo]:
        """The columns that go into the files (partition columns only with INCLUDE)."""
        return [c for i, c in enumerate(self.columns) if i not in self.parts or self.cmd.partition_include]

    @property
    def partition_names(self) -> tuple[str, ...]:
        return tuple(self.columns[i].name for i in self.parts)

    def header(self) -> bytes | None:
        return sqlgen.header_line(self.cmd, [c.name for c in self.body]) if self.cmd.header else None


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
    parquet_out.require_pyarrow()
    # Arrow's allocator keeps memory per thread: one thread for this UNLOAD's Arrow work keeps the
    # footprint flat (batches are converted and written one at a time anyway).
    arrow = ThreadPoolExecutor(1, thread_name_prefix="unload-parquet")
    try:
        converter = parquet_out.CsvBatches(plan.body, len(plan.parts))
        lanes = Lanes(partial(parquet_out.ParquetWriter, output, converter.schema), arrow, slices)
        keep(lanes)
        limit = min(plan.cmd.rowgroupsize or parquet_out.DEFAULT_ROWGROUP, plan.cmd.maxfilesize)
        pending = bytearray()
        batches = 0

        async def flush() -> None:
            nonlocal pending, batches
            data, pending = pending, bytearray()
            table, values = await asyncio.get_running_loop().run_in_executor(arrow, converter.table, data)
            slice_no, batches = batches % slices, batches + 1
            for folder, piece in parquet_out.split(table, values, plan.partition_names):
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
