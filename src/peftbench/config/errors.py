"""Configuration errors: the one-line ``ConfigError`` users see, and ``field_error`` for a validator that finds a
bad field below the one it validates (a method option, a task's metric): pydantic's own error type, carrying the
path below the validated field in its context, so that the one-line message names the exact field."""
from __future__ import annotations

import json
import re

from pydantic_core import ErrorDetails, PydanticCustomError

from ..errors import OneLine

FIELD_ERROR = "peftbench_field"  # the error type of ``field_error``; ``ctx['path']``: the field below the validated one


class ConfigError(OneLine, ValueError):
    """A one-line, user-facing configuration error."""


def field_error(path: str, message: str) -> PydanticCustomError:
    """An error of the field ``path`` below the one being validated (``options.r``, ``metric``); raise it."""
    return PydanticCustomError(FIELD_ERROR, "{message}", {"path": path, "message": message})


def message(e: ErrorDetails) -> str:
    """One of pydantic's errors as a short message with the bad value: a ``Literal``'s choices listed plainly."""
    got = e.get("input")
    if e["type"] == "literal_error":
        expected = e["ctx"]["expected"]  # "'a', 'b' or 'c'" (strings), "4 or 8" (numbers)
        choices = re.findall(r"'([^']*)'", expected) or re.split(r", | or ", expected)
        return f"'{got}' is not one of {', '.join(choices)}" if isinstance(got, str) else \
            f"{json.dumps(got, default=str)[:80]} is not one of {', '.join(choices)}"
    msg = e["msg"].removeprefix("Value error, ")
    if "input" in e and not msg.startswith("'") and e["type"] != FIELD_ERROR:
        msg = f"{msg} (got {json.dumps(got, default=str)[:80]})"
    return msg
