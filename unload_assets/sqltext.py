"""Redshift SQL text rules shared by the statement builder and the emulator's parser."""

from __future__ import annotations


def quote_literal(text: str) -> str:
    """`text` as a Redshift string literal: `'` doubled and `\\` doubled (backslash is an escape there)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
