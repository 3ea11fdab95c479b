"""The Redshift Data API (`redshift-data`), answered by running each statement on the emulator.

`RedshiftDataStandIn.answer(action, body)` serves the JSON 1.1 actions the project uses:
`ExecuteStatement` (a psycopg2 connection to the emulator, logged in as the request says, the
statement run in a background thread of its own), `DescribeStatement`, `GetStatementResult` and
`CancelStatement` (`pg_cancel_backend` of the statement's backend: the emulator cancels the query as
Redshift does).

Logins as Redshift makes them for the Data API: a cluster with `DbUser` as the temporary user
`IAM:<DbUser>`, a `SecretArn` as the user and password the secret holds (`secrets`), a Serverless
workgroup alone as the role `IAMR:unload-local`; temporary passwords are recorded in the
`CredentialRegistry` the emulator checks. Sessions: `SessionKeepAliveSeconds` keeps a statement's
connection open that long after it ends, for the next statement that names its `SessionId` (one
statement at a time per session, as AWS allows).

Every action is recorded (`calls`, `cancelled`, `statements`) for tests; nothing is logged, since
statements may hold keys.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from unload_assets_local.aws_protocol import ApiError, new_password

ROLE_DB_USER = "IAMR:unload-local"
_RUNNING = ("SUBMITTED", "PICKED", "STARTED")
# How long a temporary password minted for a Data API login lives (it is used at once).
_LOGIN_SECONDS = 900.0

Connect = Callable[[str, str, str], Any]  # (user, password, database) -> a psycopg2 connection


@dataclass
class Statement:
    id: str
    sql: str
    database: str
    session: _Session
    where: dict[str, str]  # ClusterIdentifier / WorkgroupName / DbUser / SecretArn, as asked
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    status: str = "SUBMITTED"
    error: str | None = None
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    has_result_set: bool = False
    result_rows: int = -1
    redshift_pid: int = 0
    cancel_requested: bool = False


@dataclass
class _Session:
    id: str
    login: tuple[str, str, str]  # user, password, database
    keep_alive: float = 0.0
    conn: Any = None
    busy: bool = False
    expires_at: float = 0.0
    persistent: bool = False  # a client-visible session (SessionKeepAliveSeconds was asked for)


class RedshiftDataStandIn:
    def __init__(
        self,
        connect: Connect,
        registry: Any,
        *,
        clusters: Iterable[str] = (),
        workgroups: Iterable[str] = (),
        secrets: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self._connect, self._registry = connect, registry
        self.clusters: set[str] = set(clusters)
        self.workgroups: set[str] = set(workgroups)
        self.secrets: dict[str, tuple[str, str]] = dict(secrets or {})  # ARN -> (username, password)
        self.calls: Counter[str] = Counter()
        self.cancelled: list[str] = []  # statement ids CancelStatement was asked for, in order
        self.statements: dict[str, Statement] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    # ---- the actions -------------------------------------------------------------------------
    def answer(self, action: str, body: bytes) -> dict[str, Any]:
        """The JSON answer to `action`; `ApiError` as AWS answers."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "SerializationException", "the request body is not JSON") from None
        handler = {
            "ExecuteStatement": self._execute,
            "DescribeStatement": self._describe,
            "GetStatementResult": self._result,
            "CancelStatement": self._cancel,
        }.get(action)
        if handler is None:
            raise ApiError(400, "UnknownOperationException", f"the stand-in does not answer {action}")
        with self._lock:
            self.calls[action] += 1
            self._close_expired()
        return handler(request)

    def stop(self) -> None:
        """Cancel what still runs (the emulator would wait for it as it stops), close every session."""
        with self._lock:
            running = [st for st in self.statements.values() if st.status in _RUNNING]
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for st in running:
            with contextlib.suppress(Exception):
                self._cancel_backend(st)
        for session in sessions:
            if session.conn is not None:
                session.conn.close()

    def _execute(self, request: dict[str, Any]) -> dict[str, Any]:
        sql = request.get("Sql")
        if not isinstance(sql, str) or not sql.strip():
            raise ApiError(400, "ValidationException", "Sql is required")
        keep_alive = float(request.get("SessionKeepAliveSeconds") or 0)
        session_id = request.get("SessionId")
        with self._lock:
            if session_id:
                session = self._sessions.get(session_id)
                if session is None:
                    raise ApiError(400, "ValidationException", f"Session {session_id} has expired")
                if session.busy:
                    raise ApiError(400, "ActiveSessionsExceededException", f"Session {session_id} is busy")
                where: dict[str, str] = {}
            else:
                where, login = self._login(request)
                session = _Session(id=str(uuid.uuid4()), login=login, persistent=keep_alive > 0)
                self._sessions[session.id] = session
            if keep_alive:
                session.keep_alive, session.persistent = keep_alive, True
            session.busy = True
            statement = Statement(str(uuid.uuid4()), sql, session.login[2], session, where)
            self.statements[statement.id] = statement
        threading.Thread(target=self._run, args=(statement,), daemon=True, name="data-api").start()
        answer: dict[str, Any] = {"Id": statement.id, "CreatedAt": statement.created_at,
                                  "Database": statement.database, **where}  # fmt: skip
        if session.persistent:
            answer["SessionId"] = session.id
        return answer

    def _describe(self, request: dict[str, Any]) -> dict[str, Any]:
        st = self._statement(request)
        answer: dict[str, Any] = {
            "Id": st.id, "Status": st.status, "QueryString": st.sql, "Database": st.database,
            "CreatedAt": st.created_at, "UpdatedAt": st.updated_at, "HasResultSet": st.has_result_set,
            "ResultRows": st.result_rows, "RedshiftPid": st.redshift_pid,
            "Duration": int((st.updated_at - st.created_at) * 1e9), **st.where,
        }  # fmt: skip
        if st.session.persistent:
            answer["SessionId"] = st.session.id
        if st.error is not None:
            answer["Error"] = st.error
        return answer

    def _result(self, request: dict[str, Any]) -> dict[str, Any]:
        st = self._statement(request)
        if st.status != "FINISHED" or not st.has_result_set:
            raise ApiError(400, "ResourceNotFoundException", f"Query {st.id} does not have a result")
        return {
            "Records": [[_field(value) for value in row] for row in st.rows],
            "ColumnMetadata": [{"name": name, "label": name, "typeName": kind} for name, kind in st.columns],
            "TotalNumRows": len(st.rows),
        }

    def _cancel(self, request: dict[str, Any]) -> dict[str, Any]:
        st = self._statement(request)
        with self._lock:
            self.cancelled.append(st.id)
            if st.status not in _RUNNING:
                raise ApiError(
                    400,
                    "ValidationException",
                    f"Could not cancel a query that is already in {st.status} state with ID: {st.id}",
                )
            st.cancel_requested = True
        self._cancel_backend(st)
        return {"Status": True}

    def _cancel_backend(self, st: Statement) -> None:
        """pg_cancel_backend from a session of the same user, as Redshift's own CANCEL does. (Not
        psycopg2's connection.cancel(): it holds the GIL while it waits for the emulator, which runs in
        this process and then cannot answer.)"""
        if not st.redshift_pid:
            return  # not started: `_run` sees cancel_requested
        conn = self._connect(*st.session.login)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("select pg_cancel_backend(%s)", (st.redshift_pid,))
        finally:
            conn.close()

    # ---- running a statement -----------------------------------------------------------------
    def _run(self, st: Statement) -> None:
        import psycopg2

        session = st.session
        try:
            if session.conn is None:
                session.conn = self._connect(*session.login)
                session.conn.autocommit = True
            st.redshift_pid = int(session.conn.get_backend_pid())
            self._set(st, "STARTED")
            if st.cancel_requested:
                raise psycopg2.extensions.QueryCanceledError("canceling statement due to user request")
            with session.conn.cursor() as cur:
                cur.execute(st.sql)
                if cur.description is not None:
                    st.columns = [(d.name, _type_name(d.type_code)) for d in cur.description]
                    st.rows = list(cur.fetchall())
                    st.has_result_set = True
                st.result_rows = len(st.rows) if st.has_result_set else max(cur.rowcount, -1)
            self._set(st, "FINISHED")
        except psycopg2.Error as exc:
            if st.cancel_requested:
                self._set(st, "ABORTED")
            else:
                message = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
                self._set(st, "FAILED", error=f"ERROR: {message}")
            if session.conn is not None and session.conn.closed:
                session.conn = None
        except Exception as exc:  # the emulator unreachable, say
            self._set(st, "FAILED", error=f"ERROR: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                session.busy = False
                session.expires_at = time.time() + session.keep_alive
                if not session.persistent:
                    self._sessions.pop(session.id, None)
            if not session.persistent and session.conn is not None:
                session.conn.close()

    def _set(self, st: Statement, status: str, *, error: str | None = None) -> None:
        with self._lock:
            st.status, st.error, st.updated_at = status, error, time.time()

    # ---- logins, lookups ------------------------------------------------------------------------
    def _login(self, request: dict[str, Any]) -> tuple[dict[str, str], tuple[str, str, str]]:
        """Where the statement goes (as the answer repeats it) and the emulator login it runs as."""
        database = str(request.get("Database") or "")
        if not database:
            raise ApiError(400, "ValidationException", "Database is required without a SessionId")
        cluster, workgroup = request.get("ClusterIdentifier"), request.get("WorkgroupName")
        secret_arn, db_user = request.get("SecretArn"), request.get("DbUser")
        if bool(cluster) == bool(workgroup):
            raise ApiError(400, "ValidationException", "Give ClusterIdentifier or WorkgroupName")
        if cluster and cluster not in self.clusters:
            raise ApiError(400, "ValidationException", "Redshift endpoint doesn't exist in this region.")
        if workgroup and workgroup not in self.workgroups:
            raise ApiError(400, "ResourceNotFoundException", f"Workgroup {workgroup} not found.")
        where = {"ClusterIdentifier": str(cluster)} if cluster else {"WorkgroupName": str(workgroup)}
        if secret_arn:
            if secret_arn not in self.secrets:
                raise ApiError(400, "ValidationException", f"Secrets Manager can't find {secret_arn}")
            user, password = self.secrets[secret_arn]
            return {**where, "SecretArn": secret_arn}, (user, password, database)
        if cluster:
            if not db_user:
                raise ApiError(400, "ValidationException", "DbUser or SecretArn is required for a cluster")
            user = f"IAM:{db_user}"  # GetClusterCredentials, made by the Data API on the caller's behalf
            where["DbUser"] = str(db_user)
        else:
            user = ROLE_DB_USER
        password = new_password()
        self._registry.record(user, password, time.time() + _LOGIN_SECONDS)
        return where, (user, password, database)

    def _statement(self, request: dict[str, Any]) -> Statement:
        statement_id = str(request.get("Id") or "")
        with self._lock:
            st = self.statements.get(statement_id)
        if st is None:
            raise ApiError(400, "ResourceNotFoundException", f"Query {statement_id} does not exist")
        return st

    def _close_expired(self) -> None:
        now = time.time()
        for session_id, session in list(self._sessions.items()):
            if session.persistent and not session.busy and session.expires_at <= now:
                del self._sessions[session_id]
                if session.conn is not None:
                    session.conn.close()


def _field(value: Any) -> dict[str, Any]:
    """A value as GetStatementResult sends it (numerics as text, as Redshift's Data API does)."""
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, Decimal):
        return {"stringValue": str(value)}
    return {"stringValue": str(value)}


_TYPE_NAMES = {16: "bool", 20: "int8", 21: "int2", 23: "int4", 25: "text", 700: "float4", 701: "float8",
               1043: "varchar", 1082: "date", 1114: "timestamp", 1700: "numeric"}  # fmt: skip


def _type_name(oid: int) -> str:
    return _TYPE_NAMES.get(oid, "varchar")
