"""Temporary database credentials, as Redshift's IAM authentication hands them out.

`redshift.get_cluster_credentials` (moto, behind the local stack's AWS stand-in) and
`redshift-serverless.get_credentials` (the stand-in itself) mint a user such as `IAM:alice` and a random
password that expires. Whoever mints one records it here; the emulator then accepts exactly the
credentials that were minted and have not expired, and refuses others as Redshift does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# The user name prefixes Redshift gives temporary users: IAM (existing user), IAMA (auto-created),
# IAMR (an IAM role, Redshift Serverless).
TEMPORARY_USER_PREFIXES = ("IAM:", "IAMA:", "IAMR:")


def is_temporary_user(user: str) -> bool:
    return user.startswith(TEMPORARY_USER_PREFIXES)


@dataclass(frozen=True)
class Minted:
    user: str
    password: str
    expires_at: float  # time.time() seconds


class CredentialRegistry:
    """The credentials minted so far; thread-safe (minted in an HTTP thread, checked in the emulator's)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._minted: list[Minted] = []

    def record(self, user: str, password: str, expires_at: float) -> Minted:
        minted = Minted(user, password, expires_at)
        with self._lock:
            self._minted.append(minted)
        return minted

    def minted(self) -> list[Minted]:
        """Every credential recorded, oldest first (for tests and the secret scan)."""
        with self._lock:
            return list(self._minted)

    def candidates(self, user: str) -> tuple[list[Minted], list[Minted]]:
        """The credentials minted for `user`: (still valid, expired)."""
        now = self._clock()
        with self._lock:
            mine = [m for m in self._minted if m.user == user]
        return [m for m in mine if m.expires_at > now], [m for m in mine if m.expires_at <= now]
