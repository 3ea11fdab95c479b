"""Secrets out of every text that may reach a log, metadata, an exception or Slack: one scrub for all."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Secret shapes redacted even when the exact value is unknown to us (defence in depth).
_SECRET_PATTERNS = [
    (re.compile(r"xox[abposre]-[A-Za-z0-9-]+"), "xox*-***"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "AKIA***"),
    (re.compile(r"(?i)(credentials\s+)'[^']*'"), r"\1'***'"),
    (re.compile(r"(?i)\b(password|passwd|secret\w*|token)(\s*[=:]\s*)[^\s;,'\"]+"), r"\1\2***"),
]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every known secret value (longest first, so no tail of one survives) and every
    secret-shaped word replaced by `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text
