"""`RedshiftEmulator`: a PostgreSQL wire proxy on 127.0.0.1 that executes UNLOAD like Redshift.

Every statement goes through to a real PostgreSQL cluster, each client on its own backend session;
UNLOAD is executed by the proxy (see `unload/run.py`) and its files land on S3 (the moto server locally).
The asyncio server runs in a background thread so tests and the local stack can start and stop it
from synchronous code.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from unload_assets_local.emulator.catalog.system_tables import Catalog
from unload_assets_local.emulator.connection.client import ClientConnection
from unload_assets_local.emulator.faults import UnloadFaults
from unload_assets_local.emulator.login.credentials import CredentialRegistry
from unload_assets_local.emulator.protocol.wire import STREAM_LIMIT
from unload_assets_local.emulator.services import Services

_STOP_TIMEOUT = 30.0


# What Redshift reports when the role it assumed may not write (AWS's wording since 2023 names the action
# and the resource; S3 servers that answer a bare "Access Denied", moto among them, get it added here).
_IAM_ACTIONS = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListObjectsV2": "s3:ListBucket",
    "DeleteObject": "s3:DeleteObject",
}


def _name_refusals(client: Any) -> None:
    def remember(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["emulator_request"] = (model.name, params.get("Bucket"), params.get("Key"))

    def name(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        operation, bucket, key = context.get("emulator_request") or (None, None, None)
        error = parsed.get("Error") or {}
        if operation in _IAM_ACTIONS and str(error.get("Code")) in ("AccessDenied", "403"):
            resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")
            error["Message"] = f"not authorized to perform: {_IAM_ACTIONS[operation]} on resource: {resource}"

    client.meta.events.register("before-parameter-build.s3", remember)
    client.meta.events.register("after-call.s3", name)


def _s3_client(endpoint_url: str, credentials: tuple[str, str] | None = None):  # -> S3Client
    import boto3
    from botocore.config import Config

    from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION

    key_id, secret = credentials or (
        os.environ.get("AWS_ACCESS_KEY_ID", LOCAL_KEY_ID),
        os.environ.get("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET),
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=os.environ.get("AWS_DEFAULT_REGION", REGION),
        config=Config(max_pool_connections=64, retries={"max_attempts": 3, "mode": "standard"}),
    )
    _name_refusals(client)
    return client


class RedshiftEmulator:
    def __init__(
        self,
        *,
        pg_host: str,
        pg_port: int,
        s3_endpoint_url: str,
        listen_port: int = 5439,
        slices: int = 4,
        superuser_dsn: str | None = None,
        credentials: CredentialRegistry | None = None,
        backend_login: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        logins: dict[str, str] | None = None,
        s3_credentials: tuple[str, str] | None = None,
    ) -> None:
        """`s3_credentials`: the access key id and secret UNLOAD writes with (the role Redshift assumes;
        default: the process's AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
        `credentials`: the temporary IAM users' passwords as they are minted (record them into
        `self.credentials`); `backend_login`: the PostgreSQL user and password the emulator logs in with
        for those users. Without a backend login, temporary users are refused.
        """
        if slices < 1:
            raise ValueError("slices must be at least 1")
        self.pg_host = pg_host
        self.pg_port = pg_port
        self.s3_endpoint_url = s3_endpoint_url
        self.listen_port = listen_port
        self.slices = slices
        self.superuser_dsn = superuser_dsn
        self.credentials = credentials if credentials is not None else CredentialRegistry()
        self.backend_login = backend_login
        self.tls = tls  # a server context: SSLRequest is answered with TLS (else refused, plain TCP)
        # The cluster's users and passwords: with them the emulator logs clients in itself, by MD5 as
        # Redshift does (not PostgreSQL's SCRAM, which Amazon's driver cannot parse), and logs in to
        # PostgreSQL on its own. None: PostgreSQL's authentication is relayed to the client untouched.
        self.logins = logins
        self.s3_credentials = s3_credentials
        self.port = listen_port
        self.faults = UnloadFaults()  # tests: make the next UNLOADs drop their connection or stall
        self._services: Services | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def peak_concurrent_unloads(self) -> int:
        """The most UNLOADs this emulator has had in flight at once since it started (or was reset)."""
        return self._services.peak if self._services is not None else 0

    @property
    def unloads_in_flight(self) -> int:
        """How many UNLOADs are running now."""
        return self._services.active if self._services is not None else 0

    def reset_peak(self) -> None:
        if self._services is not None:
            self._services.peak = self._services.active

    def start(self) -> RedshiftEmulator:
        """Install the catalog, start listening; returns once clients can connect."""
        catalog = Catalog(self.superuser_dsn)
        catalog.install()
        self._services = Services(
            s3=_s3_client(self.s3_endpoint_url, self.s3_credentials),
            catalog=catalog,
            cpu_pool=ThreadPoolExecutor(32, thread_name_prefix="unload-write"),
            io_pool=ThreadPoolExecutor(32, thread_name_prefix="unload-upload"),
            zip_pool=ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="unload-gzip"),
            slices=self.slices,
            faults=self.faults,
            credentials=self.credentials,
            backend_login=self.backend_login,
            tls=self.tls,
            logins=self.logins,
        )
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="redshift-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(_STOP_TIMEOUT)
        if self._error is not None:
            raise RuntimeError(f"Redshift emulator failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Close the listener and every client connection (in-flight UNLOADs are aborted)."""
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(_STOP_TIMEOUT)
        if self._services is not None:
            self._services.cpu_pool.shutdown(wait=False, cancel_futures=True)
            self._services.io_pool.shutdown(wait=False, cancel_futures=True)
            self._services.zip_pool.shutdown(wait=False, cancel_futures=True)
            self._services.catalog.close()
        self._thread = self._loop = None

    def __enter__(self) -> RedshiftEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the server thread -----------------------------------------------------------------------
    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        clients: set[asyncio.Task] = set()
        services = self._services
        assert services is not None

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            clients.add(task)
            try:
                await ClientConnection(services, self.pg_host, self.pg_port, reader, writer).run()
            except asyncio.CancelledError:
                pass  # stop(): asyncio's stream callback would log a cancelled handler as an error
            finally:
                clients.discard(task)

        server = await asyncio.start_server(on_client, "127.0.0.1", self.listen_port, limit=STREAM_LIMIT)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(clients):
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*clients, return_exceptions=True), _STOP_TIMEOUT)
        await server.wait_closed()
