"""Which statements the emulator runs itself, and how a simple Query splits into statements (pure).

An UNLOAD, or a COPY from S3, is the emulator's; everything else goes to PostgreSQL as it is.
"""

from __future__ import annotations

from unload_assets.statement.sqltext import SqlTextError, tokenize
from unload_assets_local.emulator.copy_command import is_copy_from_s3


def is_unload(sql: str) -> bool:
    """Whether `sql`, after leading whitespace and comments, starts with the keyword UNLOAD."""
    try:
        first = next(tokenize(sql), None)
    except SqlTextError:
        return False
    return first is not None and first.kind == "word" and first.value.upper() == "UNLOAD"


def split_statements(sql: str) -> list[str]:
    """The statements of a simple Query, split at top-level `;` (not inside literals, quoted names,
    dollar quotes or comments); empty ones left out. Unterminated text stays one statement, for the
    server to refuse."""
    try:
        cuts = [tok.pos for tok in tokenize(sql) if tok.kind == "punct" and tok.value == ";"]
    except SqlTextError:
        return [sql]
    pieces, start = [], 0
    for cut in [*cuts, len(sql)]:
        piece = sql[start:cut]
        if any(True for _ in tokenize(piece)):
            pieces.append(piece.strip())
        start = cut + 1
    return pieces


def holds_unload(sql: str) -> bool:
    """Whether a statement of a simple Query is one the emulator runs itself: an UNLOAD, or a COPY from
    S3 (a cheap look for the words first)."""
    lowered = sql.lower()
    if "unload" not in lowered and "copy" not in lowered:
        return False
    return emulated(sql) or any(emulated(piece) for piece in split_statements(sql))


def emulated(statement: str) -> bool:
    return is_unload(statement) or is_copy_from_s3(statement)


TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})


def first_word(sql: str) -> str:
    try:
        first = next(tokenize(sql), None)
    except SqlTextError:
        return ""
    return first.value.upper() if first is not None and first.kind == "word" else ""
