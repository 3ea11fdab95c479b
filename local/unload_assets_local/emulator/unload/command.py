"""The parsed form of one UNLOAD statement: what the parser produces and the executor consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Format = Literal["text", "csv", "json", "parquet"]
Compression = Literal["gzip", "bzip2", "zstd"]
AuthKind = Literal["iam_role", "credentials", "keys"]

MB = 1024 * 1024
# Redshift's documented bounds; "MB" is taken as MiB (AWS does not say, we chose).
MAXFILESIZE_MIN = 5 * MB
MAXFILESIZE_MAX = int(6.2 * 1024 * MB)
ROWGROUPSIZE_MIN = 32 * MB
ROWGROUPSIZE_MAX = 128 * MB


class UnloadError(Exception):
    """A statement Redshift would refuse; the message is what the client sees in the ErrorResponse."""


@dataclass(frozen=True)
class UnloadCommand:
    select: str  # the SELECT text exactly as the user meant it (literal quoting undone)
    to: str  # 's3://bucket/name-prefix' as written
    auth: AuthKind
    format: Format = "text"
    partition_by: tuple[str, ...] = ()
    partition_include: bool = False
    manifest: bool = False
    manifest_verbose: bool = False
    header: bool = False
    delimiter: str | None = None
    fixedwidth: str | None = None
    encrypted: bool = False
    encrypted_auto: bool = False
    kms_key_id: str | None = None
    compression: Compression | None = None
    addquotes: bool = False
    null_as: str | None = None
    escape: bool = False
    allowoverwrite: bool = False
    cleanpath: bool = False
    parallel: bool = True
    maxfilesize: int = MAXFILESIZE_MAX  # bytes
    rowgroupsize: int | None = None  # bytes
    region: str | None = None
    extension: str | None = None

    @property
    def bucket(self) -> str:
        return self.to[len("s3://") :].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        rest = self.to[len("s3://") :]
        return rest.split("/", 1)[1] if "/" in rest else ""
