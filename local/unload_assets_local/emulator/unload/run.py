"""Runs one UNLOAD: the query on the client's own backend, the files and manifest on S3.

Steps on the backend: read the session settings and switch to the literal rules the query needs;
describe the query (names and types, nothing executed); stream `COPY (...) TO STDOUT` into the lanes;
then put the settings back and record pg_last_unload_count/id. Any failure aborts the uploads, deletes
the files already written and leaves no manifest; the client gets an ErrorResponse and, if it was in a
transaction block, that transaction is aborted as Redshift would abort it.

The session's `statement_timeout` covers the UNLOAD as a whole (S3 writes included), as on Redshift;
tests can make an UNLOAD stall or drop its connection through `Services.faults` (see `faults.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from unload_assets_local.emulator.catalog.system_tables import COUNT_SETTING, ID_SETTING
from unload_assets_local.emulator.faults import ConnectionDropped, UnloadFault
from unload_assets_local.emulator.protocol import wire
from unload_assets_local.emulator.protocol.backend import BackendError, BackendSession
from unload_assets_local.emulator.protocol.session import Session, Settings, refuse
from unload_assets_local.emulator.services import Services
from unload_assets_local.emulator.sql.translate import to_postgres
from unload_assets_local.emulator.unload import manifest
from unload_assets_local.emulator.unload.columns import ColumnInfo
from unload_assets_local.emulator.unload.command import UnloadCommand, UnloadError
from unload_assets_local.emulator.unload.streaming import Lanes, Plan, stream_lines, stream_parquet
from unload_assets_local.emulator.unload.uploads import S3Target, put_args, s3_message
from unload_assets_local.emulator.unload.writers import FileResult, Output, utcnow

FILE_FORMATS = {"text": "Text", "csv": "Text", "json": "JSON", "parquet": "Parquet"}
QUERY_CANCELED = "57014"
T = TypeVar("T")


class StatementTimeout(Exception):
    pass


class UnloadRun:
    def __init__(
        self, services: Services, backend: BackendSession, session: Session, cmd: UnloadCommand
    ) -> None:
        self.services = services
        self.backend = backend
        self.session = session
        self.cmd = cmd
        self.target = S3Target(services.s3, cmd.bucket, put_args(cmd), services.io_pool)
        self.settings = Settings(backend)
        self.columns: list[ColumnInfo] = []
        self.lanes: Lanes | None = None
        self.output: Output | None = None
        self.query_id = -1
        self.fault: UnloadFault | None = None
        self._manifest_put: asyncio.Future[None] | None = None  # the manifest's PUT, once started

    async def run(self) -> bytes:
        catalog, db = self.services.catalog, self.session.database
        self.query_id = await asyncio.to_thread(catalog.next_query_id, db)
        try:
            await self.settings.save()
            await asyncio.to_thread(catalog.started, db, **self._history_start())
            rows, files = await self._within_timeout(self._execute())
            await asyncio.to_thread(self._log_success, rows, files)
            await self.settings.restore({COUNT_SETTING: rows, ID_SETTING: self.query_id})
        except asyncio.CancelledError:  # the client went away mid-UNLOAD
            await self._clean_up("UNLOAD cancelled: the client disconnected")
            raise
        except ConnectionDropped:
            await self._clean_up("UNLOAD aborted: the connection dropped (injected fault)")
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes an ErrorResponse
            return await self._fail(exc)
        notice = f"UNLOAD completed, {rows} record(s) unloaded successfully."
        return (
            wire.notice_response(notice)
            + wire.command_complete("UNLOAD")
            + wire.ready_for_query(self.backend.status)
        )

    async def _execute(self) -> tuple[int, list[FileResult]]:
        select = await self._describe()
        plan = Plan.build(self.cmd, select, self.columns)
        await asyncio.to_thread(self._prepare_target)
        rows = await self._stream(plan)
        await self._misbehave()
        return rows, await self._publish(plan)

    async def _within_timeout(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`, cancelled with the statement on the backend if it outlasts the session's timeout."""
        if self.settings.statement_timeout is None:
            return await work
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.settings.statement_timeout)
        finally:
            if not task.done():  # the timeout, or the client went away (this coroutine was cancelled)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task in done:
            return task.result()
        await self.backend.settle()
        raise StatementTimeout

    async def _misbehave(self) -> None:
        """A fault a test asked for, once the data files are written and the manifest is not."""
        self.fault = self.services.faults.take(self.cmd.to)
        if self.fault is None:
            return
        if self.fault.on_fire is not None:
            await asyncio.to_thread(self.fault.on_fire, self.fault)
        if self.fault.action == "drop":
            raise ConnectionDropped("the connection dropped mid-UNLOAD (injected fault)")
        if not self.fault.until_active:
            await asyncio.sleep(self.fault.seconds)
            return
        # A condition, not a sleep: held until that many UNLOADs are in flight (or `seconds` passed),
        # then a little longer, so that a client allowing more at once would show it in `peak`.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fault.seconds
        while self.services.active < self.fault.until_active and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(min(self.fault.grace, max(0.0, deadline - loop.time())))

    async def _describe(self) -> str:
        """Settle the query text and its columns; the text to run."""
        cleaned = self.cmd.select.rstrip().rstrip(";")
        transpiled = to_postgres(cleaned)
        attempts = ([(transpiled, True)] if transpiled else []) + [(cleaned, False)]
        first_error: BackendError | None = None
        for sql, standard in attempts:
            await self.settings.literals(standard=standard)
            try:
                described = await self.backend.describe(sql)
            except BackendError as exc:
                first_error = first_error or exc
                if self.backend.status == b"I":
                    continue  # sqlglot may have broken it: try the text as written
                raise first_error from None
            if described is None:
                raise UnloadError("UNLOAD: the query returns no rows to unload: UNLOAD takes a SELECT")
            self.columns = [ColumnInfo.from_wire(c) for c in described]
            return sql
        assert first_error is not None
        raise first_error

    def _prepare_target(self) -> None:
        cmd = self.cmd
        if cmd.cleanpath and not cmd.partition_by:
            self.target.clean(cmd.prefix)
        elif not cmd.allowoverwrite and not cmd.cleanpath:
            self.target.check_empty(cmd.prefix)

    async def _stream(self, plan: Plan) -> int:
        output = self.output = Output(self.cmd, self.target, plan.header(), self.services.zip_pool)
        slices = self.services.slices if self.cmd.parallel else 1
        if self.cmd.format == "parquet":
            return await stream_parquet(self.backend, plan, output, slices, self._keep)
        return await stream_lines(self.backend, plan, output, self.services.cpu_pool, slices, self._keep)

    def _keep(self, lanes: Lanes) -> None:
        self.lanes = lanes  # for the cleanup after a failure

    async def _publish(self, plan: Plan) -> list[FileResult]:
        assert self.output is not None
        files = sorted(self.output.files, key=lambda f: f.key)
        if self.cmd.manifest:
            doc = manifest.manifest(files, plan.body, verbose=self.cmd.manifest_verbose)
            put = asyncio.to_thread(self.target.put, self.output.naming.manifest_key, doc)
            # Shielded: a cancel arriving mid-PUT cannot stop the thread, so the cleanup waits for it
            # and then deletes the manifest, which must never outlive an aborted UNLOAD.
            self._manifest_put = asyncio.ensure_future(put)
            await asyncio.shield(self._manifest_put)
        return files

    def _history_start(self) -> dict[str, Any]:
        return {
            "user_id": self.settings.user_id,
            "query_id": self.query_id,
            "session_id": self.session.pid,
            "start": utcnow(),
            "file_format": FILE_FORMATS[self.cmd.format],
            "compression": (self.cmd.compression or "none").upper(),
            "location": self.cmd.to,
        }

    def _log_success(self, rows: int, files: list[FileResult]) -> None:
        catalog, db, fmt = self.services.catalog, self.session.database, FILE_FORMATS[self.cmd.format]
        uid, pid = self.settings.user_id, self.session.pid
        log = [
            (uid, self.query_id, f.slice, pid, f.url, f.start, f.end, f.records, f.size, fmt) for f in files
        ]
        catalog.file_written(db, log)
        catalog.ended(
            db,
            status="completed",
            end=utcnow(),
            rows=rows,
            files=len(files),
            size=sum(f.size for f in files),
            error=None,
            query_id=self.query_id,
        )

    async def _clean_up(self, error: str) -> None:
        if self.lanes is not None:
            await self.lanes.settle()
        if self._manifest_put is not None and self.output is not None:  # no manifest after an abort
            await asyncio.gather(self._manifest_put, return_exceptions=True)
            await asyncio.to_thread(self.target.delete, self.output.naming.manifest_key)
        keep = self.fault is not None and self.fault.leave_files  # a cluster may leave its files behind
        await asyncio.to_thread(self.target.abort_all, keep_completed=keep)
        await asyncio.to_thread(
            self.services.catalog.ended,
            self.session.database,
            status="aborted",
            end=utcnow(),
            rows=0,
            files=0,
            size=0,
            error=error,
            query_id=self.query_id,
        )

    async def _fail(self, exc: Exception) -> bytes:
        if isinstance(exc, StatementTimeout) or (
            isinstance(exc, BackendError) and exc.fields.get("C") == QUERY_CANCELED
        ):
            # Redshift's words for a statement_timeout (or a cancel), whichever part of UNLOAD it hit.
            fields = {"C": QUERY_CANCELED, "M": f"Query ({self.query_id}) canceled on user's request"}
        elif isinstance(exc, BackendError):
            # Positions point into the statement the proxy sent, not into the client's UNLOAD.
            fields = {k: v for k, v in exc.fields.items() if k not in ("P", "q", "p")}
        elif isinstance(exc, UnloadError):
            fields = {"M": str(exc)}
        elif type(exc).__module__.startswith(("botocore", "boto3")):
            fields = {"M": s3_message(exc)}
        else:
            fields = {"M": f"UNLOAD: {type(exc).__name__}: {exc}"}
        await self._clean_up(fields.get("M", ""))
        if self.backend.status == b"I":
            await self.settings.restore({COUNT_SETTING: 0, ID_SETTING: self.query_id})
        return await refuse(self.backend, fields)
