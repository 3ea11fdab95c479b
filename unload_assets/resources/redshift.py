"""Redshift for UNLOAD: the stock client resource, plus an `unload()` that is safe to log and to retry."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from dagster import Failure, MetadataValue
from dagster_aws.redshift import RedshiftClientResource
from pydantic import Field

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


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret value replaced, for anything that may reach a log or an exception."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


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

    def unload(
        self,
        sql: str,
        *,
        redacted: str,
        secrets: Iterable[str | None] = (),
        log: logging.Logger | None = None,
    ) -> UnloadOutcome:
        secrets = tuple(secrets)
        log = log or logging.getLogger(__name__)
        log.info(f"Running on {self.host}:{self.port}/{self.database}:\n{redacted}")
        started = time.monotonic()
        conn = self.connect(secrets)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                if self.statement_timeout_seconds:
                    cur.execute(f"SET statement_timeout TO {int(self.statement_timeout_seconds) * 1000}")
                cur.execute(sql)
                cur.execute("select pg_last_unload_count(), pg_last_unload_id()")
                row = cur.fetchone()
            assert row is not None
            return UnloadOutcome(rows=int(row[0]), query_id=int(row[1]), seconds=time.monotonic() - started)
        except psycopg2.Error as exc:
            raise _classify(exc, redacted, secrets) from None
        finally:
            conn.close()

    def connect(self, secrets: Iterable[str | None] = ()) -> psycopg2.extensions.connection:
        """A new connection with TCP keepalives; a refused login is a `Failure`, anything else transient."""
        try:
            return psycopg2.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.database,
                connect_timeout=self.connect_timeout,
                sslmode=self.sslmode,
                application_name="unload_assets",
                **KEEPALIVES,
            )
        except psycopg2.OperationalError as exc:
            raise _connect_error(exc, f"{self.host}:{self.port}", tuple(secrets)) from None


# Refusals that another attempt cannot fix: wrong credentials, unknown user or database.
_PERMANENT_CONNECT_ERRORS = ("authentication failed", "no pg_hba.conf entry", "does not exist")


def _connect_error(exc: psycopg2.OperationalError, where: str, secrets: tuple[str | None, ...]) -> Exception:
    message = scrub(str(exc).strip(), secrets)
    if any(marker in message for marker in _PERMANENT_CONNECT_ERRORS):
        return Failure(
            description=f"Redshift at {where} refused the login: {message}. "
            "Check REDSHIFT_USER, REDSHIFT_PASSWORD and REDSHIFT_DATABASE.",
            allow_retries=False,
        )
    return TransientRedshiftError(f"Could not connect to Redshift at {where}: {message}")


def _classify(exc: psycopg2.Error, redacted: str, secrets: tuple[str | None, ...]) -> Exception:
    message = scrub((exc.pgerror or str(exc)).strip(), secrets)
    code = exc.pgcode or ""
    transient = isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) and (
        not code or code[:2] in _TRANSIENT_SQLSTATE_CLASSES
    )
    if transient or code[:2] in _TRANSIENT_SQLSTATE_CLASSES:
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
