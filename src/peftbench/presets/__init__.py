"""The studies as ready-made grids: ``presets/NAME.yaml`` (shipped in the package; ``peftbench list presets``)
and, for each, an offline twin ``NAME-offline.yaml`` that runs on ``../shared`` data and the offline models."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def folder() -> Path:
    return Path(str(resources.files("peftbench") / "presets"))


def names() -> list[str]:
    return sorted(p.stem for p in folder().glob("*.yaml"))


def describe(name: str) -> str:
    """The preset's first line: ``# NAME: what it is``."""
    first = (folder() / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").removeprefix(f"{name}:").strip()


def resolve(path: str | Path) -> Path:
    """A grid path as given, or the shipped preset it names: ``preset:NAME``, or ``presets/NAME.yaml`` where no
    such file is in the current folder."""
    text = str(path)
    if text.startswith("preset:"):
        return folder() / f"{text.split(':', 1)[1]}.yaml"
    p = Path(text)
    if not p.exists() and p.parent.name == "presets" and (folder() / p.name).exists():
        return folder() / p.name
    return p
