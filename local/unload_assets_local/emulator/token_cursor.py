"""The UNLOAD parser's walk through a statement's tokens, and how its messages name a token.

A message never echoes a quoted value, nor a word once the statement carries keys: a value in the wrong
place may be a secret.
"""

from __future__ import annotations

from unload_assets.statement.sqltext import Token
from unload_assets_local.emulator.command import UnloadError

SECRET_KEYWORDS = frozenset({"CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"})


def _error(message: str) -> UnloadError:
    return UnloadError(f"UNLOAD: {message}")


class TokenCursor:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        # With keys in the statement, a stray word may be a secret that lost its keyword and quotes.
        self.redact = any(tok.kind == "word" and tok.value.upper() in SECRET_KEYWORDS for tok in tokens)

    def near(self, tok: Token | None) -> str:
        if tok is None:
            return "the end of the statement"
        if tok.kind == "string":
            return f"a quoted string (position {tok.pos + 1})"
        if tok.kind == "punct":
            return f'"{tok.value}"'
        if self.redact:
            return f"a word at position {tok.pos + 1} (not shown: the statement carries keys)"
        return f'"{tok.value}"' if tok.kind != "ident" else f'"{tok.value}" (a quoted identifier)'

    # -- token stream ------------------------------------------------------------------------------

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token | None:
        tok = self.peek()
        self.i += tok is not None
        return tok

    def word(self, *words: str) -> str | None:
        """Consume the next token if it is one of `words` (upper case); return it upper-cased."""
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.value.upper() in words:
            self.i += 1
            return tok.value.upper()
        return None

    def punct_if(self, char: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.value == char:
            self.i += 1
            return True
        return False

    def punct(self, char: str, message: str) -> None:
        if not self.punct_if(char):
            raise _error(f"{message}, found {self.near(self.peek())}")

    def string(self, after: str, *, secret: bool = False, expected: str = "a quoted string") -> str:
        tok = self.take()
        if tok is None or tok.kind != "string":
            # What stands where a secret belongs may be the secret itself, unquoted.
            found = "" if secret else f", found {self.near(tok)}"
            raise _error(f"expected {expected} after {after}{found}")
        return tok.value
