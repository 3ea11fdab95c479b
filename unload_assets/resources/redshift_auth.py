"""How the Redshift resource logs in: a password, or IAM temporary credentials minted per connection.

- `password`: `user` and `password`, as dagster-aws's resource does.
- `iam` (a provisioned cluster): `redshift.get_cluster_credentials` for a database user, with optional
  groups and auto-create; or, with `iam_identity`, `get_cluster_credentials_with_iam`, where the
  database user is the caller's IAM identity.
- `serverless`: `redshift-serverless.get_credentials` for a workgroup.

Temporary credentials expire (15 to 60 minutes) and a long morning outlives one set, so each new
connection asks the cache, which mints again shortly before expiry. boto3 finds the AWS credentials and
region the usual way, and the endpoint too (`AWS_ENDPOINT_URL_REDSHIFT`,
`AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS`: the local stack's stand-ins).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dagster import Failure

AUTH_MODES = ("password", "iam", "serverless", "data_api")  # data_api: resources/redshift_data.py
MIN_DURATION, MAX_DURATION = 900, 3600  # what both APIs accept
# Mint again this long before expiry (a quarter of the lifetime when that is shorter): a connection
# opened on an about-to-expire password would be refused.
_REFRESH_MARGIN_SECONDS = 300.0
# AWS error codes that another attempt cannot fix.
_PERMANENT_AWS_ERRORS = (
    "ClusterNotFound",
    "ResourceNotFoundException",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "ValidationException",
    "InvalidParameterValue",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
)


class TransientCredentialsError(Exception):
    """Minting failed for a reason that may pass (throttling, a network error): worth a retry."""


@dataclass(frozen=True)
class CredentialRequest:
    """What to mint; hashable, so the cache keeps one set per distinct request."""

    mode: str
    database: str
    duration_seconds: int = MIN_DURATION
    cluster_identifier: str | None = None
    db_user: str | None = None
    db_groups: tuple[str, ...] = ()
    auto_create: bool = False
    iam_identity: bool = False
    workgroup: str | None = None

    def describe(self) -> str:
        if self.mode == "serverless":
            return f"workgroup {self.workgroup!r} (redshift.workgroup)"
        who = "the caller's IAM identity" if self.iam_identity else f"user {self.db_user!r}"
        return f"{who} of cluster {self.cluster_identifier!r} (redshift.cluster_identifier)"


@dataclass(frozen=True)
class Login:
    user: str
    password: str
    expires_at: float | None = None  # time.time() seconds; None for a fixed password
    minted_at: float = 0.0


def mint(request: CredentialRequest) -> Login:
    """One call to AWS for a fresh user name and password."""
    import boto3
    import botocore.exceptions

    try:
        if request.mode == "iam" and request.iam_identity:
            answer = boto3.client("redshift").get_cluster_credentials_with_iam(
                ClusterIdentifier=request.cluster_identifier,
                DbName=request.database,
                DurationSeconds=request.duration_seconds,
            )
            user, password, expiration = answer["DbUser"], answer["DbPassword"], answer["Expiration"]
        elif request.mode == "iam":
            answer = boto3.client("redshift").get_cluster_credentials(
                ClusterIdentifier=request.cluster_identifier,
                DbUser=request.db_user,
                DbName=request.database,
                DurationSeconds=request.duration_seconds,
                AutoCreate=request.auto_create,
                **({"DbGroups": list(request.db_groups)} if request.db_groups else {}),
            )
            user, password, expiration = answer["DbUser"], answer["DbPassword"], answer["Expiration"]
        else:
            answer = boto3.client("redshift-serverless").get_credentials(
                workgroupName=request.workgroup,
                dbName=request.database,
                durationSeconds=request.duration_seconds,
            )
            user, password, expiration = answer["dbUser"], answer["dbPassword"], answer["expiration"]
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        what = f"Could not get temporary Redshift credentials for {request.describe()}: {code}: {message}"
        if code in _PERMANENT_AWS_ERRORS:
            raise Failure(description=what, allow_retries=False) from None
        raise TransientCredentialsError(what) from None
    except botocore.exceptions.NoCredentialsError:
        raise Failure(
            description=f"No AWS credentials to mint Redshift credentials for {request.describe()}: "
            "give the worker an IAM role or the AWS_* variables.",
            allow_retries=False,
        ) from None
    except botocore.exceptions.BotoCoreError as exc:  # endpoint unreachable, timeouts
        raise TransientCredentialsError(
            f"Could not reach AWS for temporary Redshift credentials ({request.describe()}): "
            f"{type(exc).__name__}"
        ) from None
    return Login(str(user), str(password), _timestamp(expiration), minted_at=time.time())


def _timestamp(expiration: Any) -> float:
    if isinstance(expiration, datetime):
        return expiration.timestamp()
    return float(expiration)


class CredentialCache:
    """Temporary credentials per request, minted again shortly before they expire; thread-safe."""

    def __init__(
        self, minter: Callable[[CredentialRequest], Login] = mint, clock: Callable[[], float] = time.time
    ) -> None:
        self._mint, self._clock = minter, clock
        self._lock = threading.Lock()
        self._logins: dict[CredentialRequest, Login] = {}

    def login(self, request: CredentialRequest) -> Login:
        with self._lock:
            cached = self._logins.get(request)
            if cached is None or self._expiring(cached):
                cached = self._logins[request] = self._mint(request)
            return cached

    def forget(self, request: CredentialRequest) -> None:
        """Drop a set the server refused (revoked, or the clocks disagree): the next login mints anew."""
        with self._lock:
            self._logins.pop(request, None)

    def clear(self) -> None:
        with self._lock:
            self._logins.clear()

    def _expiring(self, login: Login) -> bool:
        if login.expires_at is None:
            return False
        margin = min(_REFRESH_MARGIN_SECONDS, (login.expires_at - login.minted_at) / 4)
        return login.expires_at - self._clock() <= margin


# One cache per process: a step opens several connections, and retries open more.
CREDENTIALS = CredentialCache()
