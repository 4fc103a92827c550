"""Client values quoted back in error messages, cut to a bounded length.

Every error that names what the client sent (a model, a language, a format, an id…) quotes
it through :func:`quoted`, so a 60 KB field gives a short error, not a 60 KB one.
"""

from __future__ import annotations

MAX_ECHO = 100
"""Characters of a client value an error message quotes at most."""


def clipped(value: object, limit: int = MAX_ECHO) -> str:
    """`value` as text, cut to `limit` characters with an ellipsis when longer."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def quoted(value: object, limit: int = MAX_ECHO) -> str:
    """`value` quoted as `repr` does, cut to `limit` characters first."""
    return repr(clipped(value, limit))
