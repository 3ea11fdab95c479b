"""SSE-KMS: the key a target's objects are encrypted with, how each write asks for it, and how a written
object is judged (pure; no I/O).

One key per target (`kms_key_id`, from the target, the catalogue's `defaults` or the instance's
`s3.kms_key_id`). UNLOAD writes the staged files with it (`ENCRYPTED KMS_KEY_ID '...'`); the rename
writes every final object, part and COPY manifest with it (CopyObject, CreateMultipartUpload, PutObject:
`write_args`); the checks read each final object's HeadObject and fail naming the object when it is
not encrypted with that key (`problem`). `bucket_key` asks S3 for a bucket key (fewer KMS requests); UNLOAD
has no such option, so the staged files follow the bucket's default for that.

The key is written as its ARN or its id, not an alias: S3 reports the key ARN on every object, and an
alias cannot be matched to it without asking KMS (which the worker's policy then needs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_KEY_ID = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
_KEY = re.compile(rf"(?:arn:aws(?:-[a-z]+)*:kms:[a-z0-9-]+:\d{{12}}:key/)?{_KEY_ID}", re.ASCII)


def check_kms_key_id(value: str) -> str:
    """`value` if it is a KMS key id (`1234abcd-...`, `mrk-...`) or a key ARN."""
    if "alias/" in value:
        raise ValueError(
            "give the key's ARN or id, not an alias: S3 reports the key ARN on each object, so the checks "
            "could not match an alias to it"
        )
    if not _KEY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a KMS key id or key ARN (arn:aws:kms:<region>:<account>:key/<key id>)"
        )
    return value


def _key_id(key: str) -> str:
    return key.rsplit(":key/", 1)[-1]


def same_key(wanted: str, reported: str | None) -> bool:
    """Whether the key S3 `reported` (an ARN, usually) is `wanted` (an ARN or a bare id)."""
    if not reported:
        return False
    if ":key/" in wanted and ":key/" in reported:
        return wanted == reported
    return _key_id(wanted) == _key_id(reported)


@dataclass(frozen=True)
class Encryption:
    """How a target's objects are encrypted: SSE-KMS with `kms_key_id`, or the bucket's default (None)."""

    kms_key_id: str | None = None
    bucket_key: bool = False

    def write_args(self) -> dict[str, Any]:
        """The parameters of every CopyObject, CreateMultipartUpload and PutObject that writes an object."""
        if not self.kms_key_id:
            return {}
        args: dict[str, Any] = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        if self.bucket_key:
            args["BucketKeyEnabled"] = True
        return args

    def problem(self, head: Mapping[str, Any]) -> str | None:
        """Why the object HeadObject answered `head` for is not encrypted as asked; None if it is."""
        if not self.kms_key_id:
            return None
        sse, key = head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")
        if sse != "aws:kms":
            return f"encrypted with {sse or 'nothing'}, not aws:kms with {self.kms_key_id}"
        if not same_key(self.kms_key_id, key):
            return f"encrypted with KMS key {key}, not {self.kms_key_id}"
        if self.bucket_key and head.get("BucketKeyEnabled") is False:
            return "written without the S3 bucket key the target asks for"
        return None
