"""The local S3: a moto server on loopback with the stack's bucket created."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from unload_assets_local.postgres import free_port

# moto accepts any credentials; these only keep boto3 from searching the machine for real ones.
LOCAL_KEY_ID = "local-access-key"
LOCAL_SECRET = "local-secret-key"
REGION = "us-east-1"


class S3Server:
    def __init__(self, *, port: int = 0, bucket: str = "unload-local") -> None:
        self.port = port or free_port()
        self.bucket = bucket
        self._server: Any = None  # moto.server.ThreadedMotoServer, imported lazily (slow import)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        import logging

        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO; the stack's own output should stay readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            client.create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self):  # -> S3Client
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=LOCAL_KEY_ID,
            aws_secret_access_key=LOCAL_SECRET,
            region_name=REGION,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
