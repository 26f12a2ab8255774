"""The one property every user-facing error shares: its message is one line (a line break inside echoed user input,
e.g. an override or a cell of a data file, is shown escaped, never breaking the line)."""
from __future__ import annotations


class OneLine(Exception):
    def __init__(self, message: object = ""):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


def first_line(exc: BaseException, limit: int = 200, empty: str | None = None) -> str:
    """The first line of an exception's message (at most ``limit`` characters), for a one-line report; an empty
    message gives ``empty`` (default: the exception's type name)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else (type(exc).__name__ if empty is None else empty)
