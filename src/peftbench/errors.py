"""The one property every user-facing error shares: its message is one line (a line break inside echoed user input,
e.g. an override or a cell of a data file, is shown escaped, never breaking the line)."""
from __future__ import annotations


class OneLine(Exception):
    def __init__(self, message: object = ""):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))
