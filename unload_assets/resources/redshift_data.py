"""Statements through the Redshift Data API (`redshift-data`), for workers with no network path to Redshift.

`DataApiSession` runs statements one after another in ONE Data API session, as a psycopg2 connection
runs them in one database session: the first `ExecuteStatement` names the database and how to log in
(a provisioned cluster with `DbUser` (temporary credentials) or a Secrets Manager `SecretArn`; a
Serverless `WorkgroupName`, optionally with a `SecretArn`) and asks the session to be kept alive; the
next ones pass its `SessionId`, so `pg_last_unload_count()` reads the UNLOAD's own session.

Each statement is polled with `DescribeStatement`, the waits growing from 0.1 s to 5 s, and cancelled
with `CancelStatement` when it outlives the statement timeout (then retried, like a direct UNLOAD the
cluster's statement_timeout cancelled) or when `stop` is set (the run was terminated: not retried).
Results come back with `GetStatementResult`. Errors are classified as the direct connection classifies
them (resources/redshift.py): capacity, throttling, cancels and S3 hiccups inside the UNLOAD are
`TransientRedshiftError`, the statement's own faults a `Failure` that is not retried. The Data API
reports no SQLSTATE, so the statement's error is judged by its text.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dagster import Failure, MetadataValue

from unload_assets.secrets import scrub

# How long the session outlives each statement: the follow-up select comes right after the UNLOAD.
SESSION_KEEP_ALIVE_SECONDS = 60
# After CancelStatement, how long to wait for the statement to stop before giving up on seeing it.
_CANCEL_WAIT_SECONDS = 30.0
_RUNNING = ("SUBMITTED", "PICKED", "STARTED")
# The Data API's own refusals that another attempt may pass (its capacity, its connection to Redshift).
_TRANSIENT_API_ERRORS = (
    "ThrottlingException", "InternalServerException", "ActiveStatementsExceededException",
    "ActiveSessionsExceededException", "DatabaseConnectionException", "ExecuteStatementException",
    "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException",
)  # fmt: skip
# What Redshift says for the SQLSTATE classes the direct connection retries (08 connection, 57 cancel
# and timeout, 53 resources, 40 serialisation), and for S3 throttling or a 5xx inside the UNLOAD.
_TRANSIENT_MESSAGES = re.compile(
    r"(?i)cancel+ed on user's request|canceling statement|statement timeout|query \(\d+\) cancel"
    r"|connection (?:reset|refused|lost|closed|terminated)|server closed the connection"
    r"|terminating connection|out of memory|disk full|too many connections|deadlock detected"
    r"|serializable isolation violation"
)
# S3 slowing UNLOAD down or failing inside it: Redshift reports XX000 with S3's own status and code
# ("S3ServiceException:Please reduce your request rate.,Status 503,Error SlowDown,..."). Worth another try,
# through either path (resources/redshift.py reads it too).
S3_TRANSIENT = re.compile(
    r"S3ServiceException:.*(?:Status (?:500|503)"
    r"|Error (?:SlowDown|InternalError|ServiceUnavailable|RequestTimeout))"
)


class TransientDataApiError(Exception):
    """Raised here and turned into the resource's `TransientRedshiftError` by the caller."""


@dataclass(frozen=True)
class DataApiTarget:
    """Where statements go and how they log in: the parameters of a session's first ExecuteStatement."""

    database: str
    cluster_identifier: str | None = None
    db_user: str | None = None
    secret_arn: str | None = None
    workgroup: str | None = None

    def parameters(self) -> dict[str, str]:
        found = {"Database": self.database}
        if self.cluster_identifier:  # a provisioned cluster, when named, even if a workgroup is too
            found["ClusterIdentifier"] = self.cluster_identifier
            if self.secret_arn:
                found["SecretArn"] = self.secret_arn
            elif self.db_user:
                found["DbUser"] = self.db_user
        elif self.workgroup:
            found["WorkgroupName"] = self.workgroup
            if self.secret_arn:
                found["SecretArn"] = self.secret_arn
        return found

    def describe(self) -> str:
        if self.cluster_identifier:
            who = "secret" if self.secret_arn else f"user {self.db_user!r}"
            return f"Data API, cluster {self.cluster_identifier!r} as {who}, database {self.database!r}"
        return f"Data API, workgroup {self.workgroup!r}, database {self.database!r}"


@dataclass(frozen=True)
class Polling:
    """The waits between DescribeStatement calls: `first`, growing by `factor`, at most `longest`."""

    first: float = 0.1
    factor: float = 1.5
    longest: float = 5.0

    def waits(self) -> Iterator[float]:
        wait = self.first
        while True:
            yield wait
            wait = min(self.longest, wait * self.factor)


def data_api_client(region: str | None, endpoint_url: str | None) -> Any:
    """A `redshift-data` client of its own session (creating clients from boto3's default session is not
    thread-safe, and a step runs several UNLOADs at once)."""
    import boto3

    return boto3.session.Session().client("redshift-data", region_name=region, endpoint_url=endpoint_url)


class DataApiSession:
    """Statements in one Data API session, each waited for; see the module's docstring."""

    def __init__(
        self,
        client: Any,
        target: DataApiTarget,
        *,
        secrets: Iterable[str | None] = (),
        timeout_seconds: float | None = None,
        stop: threading.Event | None = None,
        polling: Polling = Polling(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._target = client, target
        self._secrets = tuple(secrets)
        self._timeout, self._polling, self._clock = timeout_seconds, polling, clock
        self._stop = stop or threading.Event()
        self.session_id: str | None = None
        self.statement_ids: list[str] = []

    def execute(self, sql: str, redacted: str) -> dict[str, Any]:
        """Run `sql` to its end; its final DescribeStatement answer."""
        if self._stop.is_set():
            raise _terminated(None)
        where = {"SessionId": self.session_id} if self.session_id else self._target.parameters()
        answer = self._call(
            "ExecuteStatement",
            Sql=sql,
            SessionKeepAliveSeconds=SESSION_KEEP_ALIVE_SECONDS,
            StatementName="unload_assets",
            **where,
        )
        statement_id = str(answer["Id"])
        self.statement_ids.append(statement_id)
        self.session_id = answer.get("SessionId") or self.session_id
        return self._wait(statement_id, redacted)

    def first_row(self, sql: str, redacted: str) -> list[Any]:
        """The first row `sql` returns, its values as Python values."""
        described = self.execute(sql, redacted)
        if not described.get("HasResultSet"):
            raise TransientDataApiError(f"Statement {described['Id']} returned no result set")
        result = self._call("GetStatementResult", Id=described["Id"])
        records = result.get("Records") or []
        if not records:
            raise TransientDataApiError(f"Statement {described['Id']} returned no rows")
        return [_value(field) for field in records[0]]

    # ---- waiting, cancelling -----------------------------------------------------------------
    def _wait(self, statement_id: str, redacted: str) -> dict[str, Any]:
        deadline = None if not self._timeout else self._clock() + self._timeout
        for wait in self._polling.waits():
            described = self._call("DescribeStatement", Id=statement_id)
            status = described.get("Status")
            if status == "FINISHED":
                return described
            if status == "FAILED":
                raise _statement_failed(described, redacted, self._secrets)
            if status == "ABORTED":
                raise TransientDataApiError(
                    f"UNLOAD did not finish: statement {statement_id} was cancelled (ABORTED) by someone else"
                )
            if deadline is not None and self._clock() >= deadline:
                self._cancel(statement_id)
                raise TransientDataApiError(
                    f"UNLOAD did not finish: statement {statement_id} ran longer than "
                    f"{self._timeout:g} s (redshift.statement_timeout_seconds) and was cancelled "
                    "(CancelStatement)"
                )
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - self._clock()))
            if self._stop.wait(wait):
                self._cancel(statement_id)
                raise _terminated(statement_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def _cancel(self, statement_id: str) -> None:
        """CancelStatement, then wait (bounded) until the statement has stopped."""
        # Best effort: the statement may have finished meanwhile (a ValidationException), or the Data API
        # be unreachable; the caller raises its own error either way.
        with contextlib.suppress(Exception):
            self._client.cancel_statement(Id=statement_id)
        until = self._clock() + _CANCEL_WAIT_SECONDS
        for wait in Polling(first=0.05, longest=1.0).waits():
            try:
                status = self._client.describe_statement(Id=statement_id).get("Status")
            except Exception:
                return
            if status not in _RUNNING or self._clock() >= until:
                return
            time.sleep(wait)

    def _call(self, operation: str, **parameters: Any) -> dict[str, Any]:
        """One Data API call; its errors classified, without the statement or a secret in them."""
        import botocore.exceptions

        method = getattr(self._client, _snake(operation))
        try:
            return dict(method(**parameters))
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), scrub(str(error.get("Message", "")), self._secrets)
            what = f"Redshift Data API {operation} ({self._target.describe()}): {code}: {message}"
            if (
                code in _TRANSIENT_API_ERRORS
                or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
            ):
                raise TransientDataApiError(what) from None
            raise Failure(description=what, allow_retries=False) from None
        except botocore.exceptions.NoCredentialsError:
            raise Failure(
                description=f"No AWS credentials for the Redshift Data API ({self._target.describe()}): "
                "give the worker an IAM role or the AWS_* variables.",
                allow_retries=False,
            ) from None
        except botocore.exceptions.BotoCoreError as exc:  # endpoint unreachable, timeouts
            raise TransientDataApiError(
                f"Could not reach the Redshift Data API for {operation} ({self._target.describe()}): "
                f"{type(exc).__name__}"
            ) from None


def _statement_failed(described: dict[str, Any], redacted: str, secrets: tuple[str | None, ...]) -> Exception:
    message = scrub(" ".join(str(described.get("Error") or "no error given").split()), secrets)
    if _TRANSIENT_MESSAGES.search(message) or S3_TRANSIENT.search(message):
        return TransientDataApiError(
            f"UNLOAD did not finish: connection lost, cancelled or out of capacity (statement "
            f"{described.get('Id')}): {message}"
        )
    return Failure(
        description=f"Redshift refused the UNLOAD (Data API statement {described.get('Id')}): {message}",
        metadata={
            "statement": MetadataValue.md(f"```sql\n{redacted}\n```"),
            "data_api_statement_id": str(described.get("Id")),
        },
        allow_retries=False,
    )


def _terminated(statement_id: str | None) -> Failure:
    which = f"statement {statement_id} cancelled (CancelStatement)" if statement_id else "not started"
    return Failure(description=f"UNLOAD stopped: the run was terminated; {which}", allow_retries=False)


def _value(field: dict[str, Any]) -> Any:
    if field.get("isNull"):
        return None
    for kind in ("longValue", "doubleValue", "stringValue", "booleanValue", "blobValue"):
        if kind in field:
            return field[kind]
    return None


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
