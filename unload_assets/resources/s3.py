"""The instance's S3 client: dagster-aws's `S3Resource`, with the account's rules on every request.

- `expected_bucket_owner`: every request that takes `ExpectedBucketOwner` (and a copy's
  `ExpectedSourceBucketOwner`) carries it, so that a bucket of that name in another account (renamed,
  deleted and re-created) refuses the request instead of receiving the data. The rename, the checks,
  the unload op's listings and the S3 handoff all get their clients here.
- A refusal names what was refused: S3's own "Access Denied" (moto's, and older AWS messages) says
  neither the action nor the resource, so each AccessDenied answer is completed with the IAM action the
  request needs and its resource ARN (`IAM_ACTIONS`), the line an operator compares with the policy in
  `deploy/iam/`. Nothing secret is in it: an ARN and an account id.

Both are botocore event handlers on the client (`before-parameter-build`, `after-call`), the SDK's own
extension points, so no call site has to remember them.
"""

from __future__ import annotations

from typing import Any

from dagster_aws.s3 import S3Resource
from pydantic import Field

# The IAM action each S3 operation the project makes is authorised by (AWS's "Actions defined by Amazon
# S3"); the worker's policy in deploy/iam/ grants exactly these. A CopyObject or UploadPartCopy also needs
# s3:GetObject on its source (a staged file).
IAM_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
}
_OWNER_PARAMS = ("ExpectedBucketOwner", "ExpectedSourceBucketOwner")
_DENIED = ("AccessDenied", "403", "Forbidden")
_BUCKET_LEVEL = ("ListObjectsV2", "ListObjects", "HeadBucket", "ListMultipartUploads")


def resource_arn(operation: str, bucket: str, key: str | None) -> str:
    """The ARN an operation on `bucket` (and `key`) is authorised on."""
    if operation in _BUCKET_LEVEL or key is None:
        return f"arn:aws:s3:::{bucket}"
    return f"arn:aws:s3:::{bucket}/{key}"


def attach_account_rules(client: Any, expected_bucket_owner: str | None) -> Any:
    """Register the handlers on `client` (a boto3 S3 client); returns it."""
    events = client.meta.events

    def add_owner(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["unload_request"] = (model.name, params.get("Bucket"), params.get("Key"))
        if expected_bucket_owner:
            members = model.input_shape.members if model.input_shape is not None else {}
            for name in _OWNER_PARAMS:
                if name in members:
                    params.setdefault(name, expected_bucket_owner)

    def name_refusal(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        operation, bucket, key = context.get("unload_request") or (None, None, None)
        if operation not in IAM_ACTIONS or not bucket:
            return
        owner = ""
        if expected_bucket_owner:
            owner = f"; the bucket must belong to account {expected_bucket_owner}"

        error = parsed.get("Error") or {}
        if str(error.get("Code")) in _DENIED:
            needs = f"needs {IAM_ACTIONS[operation]} on {resource_arn(operation, bucket, key)}{owner}"
            error["Message"] = f"{error.get('Message') or 'Access Denied'} ({needs})"
        for item in parsed.get("Errors") or []:  # DeleteObjects: refused key by key in a 200 answer
            if str(item.get("Code")) in _DENIED:
                needs = f"needs s3:DeleteObject on {resource_arn(operation, bucket, item.get('Key'))}"
                item["Message"] = f"{item.get('Message') or 'Access Denied'} ({needs}{owner})"

    events.register("before-parameter-build.s3", add_owner)
    events.register("after-call.s3", name_refusal)
    return client


class UnloadS3Resource(S3Resource):
    """dagster-aws's S3 resource (same fields), whose clients carry the account's rules."""

    expected_bucket_owner: str | None = Field(
        default=None,
        description="The 12-digit account id that must own the bucket: sent as ExpectedBucketOwner on "
        "every request, so a bucket of that name in another account refuses it.",
    )

    def get_client(self) -> Any:
        return attach_account_rules(super().get_client(), self.expected_bucket_owner or None)
