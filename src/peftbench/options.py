"""The base of every method's and task's options model: unknown names are errors, values are frozen."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(Options):
    """A method or task without options of its own."""


def describe(model: type[BaseModel]) -> str:
    """``name=default, ...`` for ``peftbench list``."""
    parts = []
    for name, f in model.model_fields.items():
        parts.append(name if f.is_required() else f"{name}={f.get_default(call_default_factory=True)!r}")
    return ", ".join(parts) or "(none)"
