"""Which statements the emulator runs itself, how a simple Query splits into statements, where a bind
parameter stands, and the string literals the emulator writes (pure).

An UNLOAD, or a COPY from S3, is the emulator's; everything else goes to PostgreSQL as it is.
"""

from __future__ import annotations

from unload_assets.statement.sqltext import SqlTextError, tokenize


def is_unload(sql: str) -> bool:
    """Whether `sql`, after leading whitespace and comments, starts with the keyword UNLOAD."""
    try:
        first = next(tokenize(sql), None)
    except SqlTextError:
        return False
    return first is not None and first.kind == "word" and first.value.upper() == "UNLOAD"


def is_copy_from_s3(sql: str) -> bool:
    """`COPY <table> [(...)] FROM 's3://...'`: a COPY whose source is S3 (not STDIN, not a server file)."""
    try:
        tokens = tokenize(sql)
        first = next(tokens, None)
        if first is None or first.kind != "word" or first.value.upper() != "COPY":
            return False
        for tok in tokens:
            if tok.kind == "word" and tok.value.upper() == "FROM":
                source = next(tokens, None)
                return source is not None and source.kind == "string" and source.value.startswith("s3://")
    except SqlTextError:
        return False
    return False


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


def holds_emulated(sql: str) -> bool:
    """Whether a statement of a simple Query is one the emulator runs itself: an UNLOAD, or a COPY from
    S3 (a cheap look for the words first)."""
    lowered = sql.lower()
    if "unload" not in lowered and "copy" not in lowered:
        return False
    return emulated(sql) or any(emulated(piece) for piece in split_statements(sql))


def emulated(statement: str) -> bool:
    return is_unload(statement) or is_copy_from_s3(statement)


def first_parameter(sql: str) -> tuple[int, str] | None:
    """Where the first bind parameter (`$1`, `$2`, ...) stands outside literals and comments: (offset, the
    parameter as written); None without one."""
    try:
        tokens = list(tokenize(sql))
    except SqlTextError:
        return None
    for dollar, number in zip(tokens, tokens[1:], strict=False):
        if (
            dollar.kind == "punct"
            and dollar.value == "$"
            and number.kind == "number"
            and number.pos == dollar.pos + 1
        ):
            return dollar.pos, "$" + number.value
    return None


TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})


def first_word(sql: str) -> str:
    try:
        first = next(tokenize(sql), None)
    except SqlTextError:
        return ""
    return first.value.upper() if first is not None and first.kind == "word" else ""


def literal(text: str) -> str:
    """`text` as an E'' string literal, which means the same whatever standard_conforming_strings says."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
