"""Redshift for UNLOAD: the stock client resource, plus an `unload()` that is safe to log and to retry."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg2
import psycopg2.errors
from dagster import Failure, MetadataValue
from dagster_aws.redshift import RedshiftClientResource
from pydantic import Field

from unload_assets.resources.redshift_auth import (
    CREDENTIALS,
    CredentialRequest,
    Login,
    TransientCredentialsError,
)
from unload_assets.resources.redshift_data import (
    S3_TRANSIENT,
    DataApiSession,
    DataApiTarget,
    TransientDataApiError,
    data_api_client,
)
from unload_assets.secrets import scrub

# SQLSTATE classes worth another try: connection failures (08), cancels and timeouts (57),
# resource exhaustion (53), serialisation/deadlock (40). Everything else is the statement's fault.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "57", "53", "40")
# A long UNLOAD sends nothing back until it ends: TCP keepalives stop a NAT or firewall from forgetting
# the idle connection, and tell a dead cluster from a slow one (after idle + count x interval seconds).
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 60, "keepalives_interval": 15, "keepalives_count": 4}


@dataclass(frozen=True)
class UnloadOutcome:
    rows: int
    query_id: int
    seconds: float


class TransientRedshiftError(Exception):
    """A connection or capacity problem: the op's RetryPolicy tries again."""


class StatementSession(Protocol):
    """Statements run in order in one database session (a psycopg2 connection, or a Data API session)."""

    def execute(self, sql: str, redacted: str) -> Any: ...

    def first_row(self, sql: str, redacted: str) -> list[Any]: ...


class ConnectionSession:
    """A psycopg2 connection as a `StatementSession`; its errors classified (`_classify`)."""

    def __init__(self, conn: psycopg2.extensions.connection, secrets: tuple[str | None, ...]) -> None:
        self._conn, self._secrets = conn, secrets

    def execute(self, sql: str, redacted: str) -> None:
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql)
        except psycopg2.Error as exc:
            raise _classify(exc, redacted, self._secrets) from None

    def first_row(self, sql: str, redacted: str) -> list[Any]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
        except psycopg2.Error as exc:
            raise _classify(exc, redacted, self._secrets) from None
        assert row is not None
        return list(row)


class RedshiftUnloadResource(RedshiftClientResource):
    """`RedshiftClientResource` with the same fields and an `unload()` method.

    The stock client opens a new connection per call (so `pg_last_unload_count()` would read another
    session) and logs every statement at INFO (so keys in the statement would land in the event log).
    `unload()` runs both statements on one connection and only ever logs the redacted text.
    """

    statement_timeout_seconds: int | None = Field(
        default=None,
        description="Cancel an UNLOAD that runs longer (Redshift's statement_timeout, for the session); "
        "the op then retries it. None: the cluster's own limits apply.",
    )
    sslrootcert: str | None = Field(
        default=None,
        description="The CA bundle that signs the server's certificate, for sslmode verify-ca/verify-full.",
    )
    auth: str = Field(
        default="password",
        description="password (user and password), iam (redshift.get_cluster_credentials for db_user of "
        "cluster_identifier), serverless (redshift-serverless.get_credentials for workgroup) or data_api "
        "(statements through the Redshift Data API: cluster_identifier with db_user or secret_arn, or "
        "workgroup).",
    )
    cluster_identifier: str | None = Field(default=None, description="auth=iam: the cluster.")
    db_user: str | None = Field(default=None, description="auth=iam: the database user (default: user).")
    db_groups: list[str] = Field(default_factory=list, description="auth=iam: groups the user joins.")
    auto_create: bool = Field(default=False, description="auth=iam: create the user if it does not exist.")
    iam_identity: bool = Field(
        default=False,
        description="auth=iam: get_cluster_credentials_with_iam (the database user is the caller's IAM "
        "identity) instead of get_cluster_credentials for db_user.",
    )
    workgroup: str | None = Field(default=None, description="auth=serverless: the workgroup.")
    credentials_duration_seconds: int = Field(
        default=900, description="auth=iam/serverless: the lifetime asked for (900 to 3600 seconds)."
    )
    secret_arn: str | None = Field(
        default=None,
        description="auth=data_api: a Secrets Manager secret holding the database user's name and password "
        "(instead of db_user's temporary credentials).",
    )
    region: str | None = Field(default=None, description="auth=data_api: the region (boto3's default chain).")
    endpoint_url: str | None = Field(
        default=None, description="auth=data_api: the Data API endpoint (local stand-in only)."
    )

    def unload(
        self,
        sql: str,
        *,
        redacted: str,
        secrets: Iterable[str | None] = (),
        log: logging.Logger | None = None,
        stop: threading.Event | None = None,
    ) -> UnloadOutcome:
        """The UNLOAD, then `pg_last_unload_count()` in the same session, through a connection or the
        Data API (`auth`); `stop` set (the run terminated) cancels a Data API statement."""
        secrets = tuple(secrets)
        log = log or logging.getLogger(__name__)
        log.info(f"Running on {self.describe()}:\n{redacted}")
        started = time.monotonic()
        with self.session(secrets, stop=stop) as session:
            session.execute(sql, redacted)
            row = session.first_row("select pg_last_unload_count(), pg_last_unload_id()", redacted)
        return UnloadOutcome(rows=int(row[0]), query_id=int(row[1]), seconds=time.monotonic() - started)

    def describe(self) -> str:
        """Where statements run, for the log."""
        if self.auth == "data_api":
            return self.data_api_target().describe()
        return f"{self.host}:{self.port}/{self.database}"

    @contextmanager
    def session(
        self, secrets: Iterable[str | None] = (), *, stop: threading.Event | None = None
    ) -> Iterator[StatementSession]:
        """One database session, its statements run in order: the seam between the UNLOAD and how it
        reaches Redshift. Errors come out classified: `TransientRedshiftError` or a final `Failure`."""
        secrets = tuple(secrets)
        if stop is not None and stop.is_set():
            raise Failure(description="UNLOAD not started: the run was terminated", allow_retries=False)
        if self.auth == "data_api":
            client = data_api_client(self.region, self.endpoint_url)
            timeout = self.statement_timeout_seconds
            try:
                yield DataApiSession(client, self.data_api_target(), secrets=secrets,
                                     timeout_seconds=timeout, stop=stop)  # fmt: skip
            except TransientDataApiError as exc:
                raise TransientRedshiftError(str(exc)) from None
            return
        login = self.login()
        secrets = (*secrets, login.password)
        conn = self._connect(login, secrets)
        try:
            conn.autocommit = True
            session = ConnectionSession(conn, secrets)
            if self.statement_timeout_seconds:
                timeout_ms = int(self.statement_timeout_seconds) * 1000
                session.execute(f"SET statement_timeout TO {timeout_ms}", "SET statement_timeout")
            yield session
        finally:
            conn.close()

    def data_api_target(self) -> DataApiTarget:
        return DataApiTarget(
            database=self.database or "",
            cluster_identifier=self.cluster_identifier,
            db_user=self.db_user or self.user,
            secret_arn=self.secret_arn,
            workgroup=self.workgroup,
        )

    def connect(self, secrets: Iterable[str | None] = ()) -> psycopg2.extensions.connection:
        """A new connection with TCP keepalives; a refused login is a `Failure`, anything else transient."""
        login = self.login()
        return self._connect(login, (*secrets, login.password))

    def login(self) -> Login:
        """The user and password for the next connection: fixed, or temporary ones (minted when the
        cached set is missing or about to expire)."""
        if self.auth in ("password", "data_api"):
            return Login(self.user or "", self.password or "")
        try:
            return CREDENTIALS.login(self._credential_request())
        except TransientCredentialsError as exc:
            raise TransientRedshiftError(str(exc)) from None

    def _credential_request(self) -> CredentialRequest:
        return CredentialRequest(
            mode=self.auth,
            database=self.database or "",
            duration_seconds=self.credentials_duration_seconds,
            cluster_identifier=self.cluster_identifier,
            db_user=self.db_user or self.user,
            db_groups=tuple(self.db_groups),
            auto_create=self.auto_create,
            iam_identity=self.iam_identity,
            workgroup=self.workgroup,
        )

    def _connect(self, login: Login, secrets: tuple[str | None, ...]) -> psycopg2.extensions.connection:
        ssl = {"sslrootcert": self.sslrootcert} if self.sslrootcert else {}
        try:
            return psycopg2.connect(
                host=self.host,
                port=self.port,
                user=login.user,
                password=login.password,
                dbname=self.database,
                connect_timeout=self.connect_timeout,
                sslmode=self.sslmode,
                application_name="unload_assets",
                **ssl,
                **KEEPALIVES,
            )
        except psycopg2.OperationalError as exc:
            if self.auth != "password":
                CREDENTIALS.forget(self._credential_request())
            raise _connect_error(exc, f"{self.host}:{self.port}", secrets, self.auth) from None


# Refusals that another attempt cannot fix: wrong credentials, unknown user or database, a certificate
# that does not verify (libpq's wording for each).
_PERMANENT_CONNECT_ERRORS = ("authentication failed", "no pg_hba.conf entry", "does not exist")
_TLS_ERRORS = (
    "certificate verify failed",
    "root certificate file",
    "server certificate for",
    "does not match host name",
    "server does not support SSL",
)
_LOGIN_HINTS = {
    "password": "Check redshift.user, redshift.password and redshift.database.",
    "iam": "The temporary credentials were refused: check redshift.db_user (or redshift.user), "
    "redshift.db_groups, redshift.auto_create and redshift.database, and the worker's IAM permissions.",
    "serverless": "The temporary credentials were refused: check redshift.workgroup and redshift.database, "
    "and the worker's IAM permissions.",
}


def _connect_error(
    exc: psycopg2.OperationalError, where: str, secrets: tuple[str | None, ...], auth: str = "password"
) -> Exception:
    message = scrub(str(exc).strip(), secrets)
    if any(marker in message for marker in _TLS_ERRORS):
        return Failure(
            description=f"The TLS connection to Redshift at {where} failed: {message}. "
            "Check redshift.sslmode and redshift.sslrootcert (the CA bundle that signs the server's "
            "certificate) and that redshift.host is the name on that certificate.",
            allow_retries=False,
        )
    if any(marker in message for marker in _PERMANENT_CONNECT_ERRORS):
        return Failure(
            description=f"Redshift at {where} refused the login: {message}. {_LOGIN_HINTS[auth]}",
            allow_retries=False,
        )
    return TransientRedshiftError(f"Could not connect to Redshift at {where}: {message}")


def _s3_throttled(code: str, message: str) -> bool:
    return code in ("", "XX000") and S3_TRANSIENT.search(message) is not None


def _classify(exc: psycopg2.Error, redacted: str, secrets: tuple[str | None, ...]) -> Exception:
    message = scrub((exc.pgerror or str(exc)).strip(), secrets)
    code = exc.pgcode or ""
    transient = isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) and (
        not code or code[:2] in _TRANSIENT_SQLSTATE_CLASSES
    )
    if transient or code[:2] in _TRANSIENT_SQLSTATE_CLASSES or _s3_throttled(code, message):
        return TransientRedshiftError(
            f"UNLOAD did not finish: connection lost, cancelled or out of capacity "
            f"({code or 'no SQLSTATE'}): {message}"
        )
    # `from None` above and a fresh exception here: psycopg2's own exception may carry the statement.
    return Failure(
        description=f"Redshift refused the UNLOAD ({code or 'error'}): {message}",
        metadata={"statement": MetadataValue.md(f"```sql\n{redacted}\n```"), "sqlstate": code},
        allow_retries=False,
    )
