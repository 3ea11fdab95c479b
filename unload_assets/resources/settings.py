"""Where UNLOAD writes and how Redshift is authorised to write there."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from unload_assets.statement.auth import UnloadAuth


class UnloadSettings(ConfigurableResource):
    """The bucket, the staging prefix and the UNLOAD authorization (an IAM role, or keys)."""

    bucket: str = Field(description="Bucket that receives both the staged and the final objects.")
    staging_prefix: str = Field(default="_staging", description="Key prefix for UNLOAD's raw output.")
    iam_role: str | None = Field(
        default=None, description="IAM_ROLE for UNLOAD: an ARN, a comma-separated chain, or 'default'."
    )
    access_key_id: str | None = Field(
        default=None, description="Key-based authorization (instead of a role)."
    )
    secret_access_key: str | None = Field(default=None, description="Secret; never logged.")
    max_concurrent_unloads: int = Field(
        default=4,
        ge=1,
        le=50,
        description="UNLOADs one unload step runs at once. The `redshift` pool limits how many unload "
        "steps run at once: the deployment's cap is the product (deploy/dagster.yaml sets the pool to 1).",
    )
    session_token: str | None = Field(default=None, description="Secret; never logged.")
    expected_bucket_owner: str | None = Field(
        default=None, description="The account id that must own the bucket (checked before any UNLOAD)."
    )

    def auth(self) -> UnloadAuth:
        return UnloadAuth(
            iam_role=self.iam_role or None,
            access_key_id=self.access_key_id or None,
            secret_access_key=self.secret_access_key or None,
            session_token=self.session_token or None,
        )

    def secrets(self) -> tuple[str | None, ...]:
        """Values that must never reach a log, metadata, Slack or an exception text."""
        return (self.secret_access_key, self.session_token, self.access_key_id)

    def staging_key_prefix(self) -> str:
        return self.staging_prefix.strip("/")
