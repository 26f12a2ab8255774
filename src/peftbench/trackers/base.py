"""What every tracker receives, and the fan-out the run calls (``Trackers``)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from .. import registry


class Tracker:
    """One experiment tracker. ``start`` opens it for a run (``folder``: where its files go by default);
    ``log`` records scalars at an optimizer step; ``finish`` records the final figures and closes it."""

    name: ClassVar[str] = ""
    package: ClassVar[str] = ""  # the module it needs (checked at validation: a one-line error where absent)
    extra: ClassVar[str] = ""  # the pip extra that installs it

    def start(self, run_name: str, config: dict, folder: Path) -> str:
        """Open; returns where the records go (a folder or a URI), recorded in the run's provenance."""
        raise NotImplementedError

    def log(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self, summary: dict[str, float]) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """The run failed: close, marked failed where the tracker has such a mark."""
        self.finish({})


def missing(name: str) -> str | None:
    """Why tracker ``name`` cannot run in this environment (its package is not installed), or None."""
    cls = registry.get("tracker", name)
    if cls.package and importlib.util.find_spec(cls.package) is None:
        return f"{name} is not installed; pip install 'peftbench[{cls.extra or name}]'"
    return None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of ``a/b/c`` keys (lists kept as their JSON text)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}/" if isinstance(value, dict) else f"{prefix}{key}"))
        return out
    return {prefix.rstrip("/"): obj}


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The entries that are finite-or-not numbers (bools and None left out): what a scalar logger takes."""
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Trackers:
    """The run's trackers as one: each call goes to every tracker; the folder is the run's ``trackers/``."""

    def __init__(self, names: list[str], run_name: str, config: dict, folder: Path):
        self.open: list[Tracker] = []
        self.where: dict[str, str] = {}
        for name in names:
            tracker = registry.get("tracker", name)()
            self.where[name] = tracker.start(run_name, config, folder / name)
            self.open.append(tracker)

    def log(self, values: dict[str, Any], step: int) -> None:
        values = numbers(values)
        for tracker in self.open:
            tracker.log(values, step)

    def finish(self, summary: dict[str, Any]) -> None:
        summary = numbers(flatten(summary))
        for tracker in self.open:
            tracker.finish(summary)
        self.open = []

    def abort(self) -> None:
        for tracker in self.open:
            try:
                tracker.abort()
            except Exception:  # noqa: BLE001 - the run's own error is the one to report
                pass
        self.open = []
