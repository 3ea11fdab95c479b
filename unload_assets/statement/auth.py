"""How Redshift authorizes an UNLOAD: an IAM role (or chain of roles), or access keys."""

from __future__ import annotations

import re
from dataclasses import dataclass

from unload_assets.statement.sqltext import quote_literal

_ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::\d{12}:role/(?:[\w+=.@-]+/)*[\w+=.@-]{1,64}", re.ASCII)


def check_iam_role(role: str) -> str:
    """`role` if it is `default` or a comma-separated chain (at most 10) of IAM role ARNs."""
    if "'" in role or '"' in role:
        raise ValueError("IAM role must not contain quotes; give the bare ARN")
    if role.lower() == "default":
        return role
    arns = role.split(",")
    if len(arns) > 10:
        raise ValueError(f"IAM role chain has {len(arns)} roles; Redshift chains at most 10")
    for arn in arns:
        if not _ROLE_ARN.fullmatch(arn):
            raise ValueError(
                f"invalid IAM role {arn!r}: expected 'default' or arn:aws:iam::<12-digit account>:role/<name>"
                " (chain roles with commas, no spaces)"
            )
    return role


@dataclass(frozen=True, repr=False)
class UnloadAuth:
    """How Redshift authorizes the UNLOAD: an IAM role (preferred), or access keys."""

    iam_role: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __post_init__(self) -> None:
        for name in ("iam_role", "access_key_id", "secret_access_key", "session_token"):
            if getattr(self, name) == "":  # unset env vars often arrive as "" (.env files, EnvVar)
                object.__setattr__(self, name, None)
        keys = (self.access_key_id, self.secret_access_key, self.session_token)
        if self.iam_role is not None:
            if any(value is not None for value in keys):
                raise ValueError("UNLOAD authorization: set an IAM role or access keys, not both")
            check_iam_role(self.iam_role)
        elif self.access_key_id is None or self.secret_access_key is None:
            raise ValueError(
                "UNLOAD authorization: set an IAM role (s3.iam_role), or both s3.access_key_id"
                " and s3.secret_access_key (plus s3.session_token for temporary keys)"
            )

    def __repr__(self) -> str:
        def shown(value: str | None) -> str:
            return "None" if value is None else "'***'"

        return (
            f"UnloadAuth(iam_role={self.iam_role!r}, access_key_id={shown(self.access_key_id)}, "
            f"secret_access_key={shown(self.secret_access_key)}, session_token={shown(self.session_token)})"
        )

    def clause(self, *, redacted: bool) -> str:
        """The authorization clause; `redacted` puts `'***'` where every secret goes."""
        if self.iam_role is not None:
            role = self.iam_role
            return "IAM_ROLE default" if role.lower() == "default" else f"IAM_ROLE {quote_literal(role)}"

        def secret(value: str) -> str:
            return "'***'" if redacted else quote_literal(value)

        assert self.access_key_id is not None and self.secret_access_key is not None  # __post_init__
        text = f"ACCESS_KEY_ID {secret(self.access_key_id)}"
        text += f" SECRET_ACCESS_KEY {secret(self.secret_access_key)}"
        return text if self.session_token is None else f"{text} SESSION_TOKEN {secret(self.session_token)}"
