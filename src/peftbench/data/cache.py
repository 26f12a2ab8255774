"""Tokenised features cached on disk (Arrow), shared by every run of a grid and by later grids.

A run's features are a function of the task's data as loaded (its content hashes), the task's spec and code,
the tokenizer (its full serialisation), the architecture and ``max_length``; the key hashes all of them, so a
second run over the same data and tokenizer loads memory-mapped Arrow files instead of tokenising again.
Entries are written to a temporary folder and renamed into place (two runners preparing the same key at once
both succeed; one copy is kept). The folder is ``$PEFTBENCH_CACHE`` (default ``~/.cache/peftbench/features``);
deleting it is always safe. ``train.cache_features: false`` turns it off for a grid.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

CACHE_VERSION = 1
TRAINING_ONLY = ("name", "lr", "epochs", "metric", "pes_weights")  # task fields that do not change the features


def cache_root() -> Path:
    return Path(os.environ.get("PEFTBENCH_CACHE") or Path.home() / ".cache" / "peftbench" / "features").expanduser()


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer as a whole: its fast serialisation (vocabulary, normaliser, pre-tokeniser, post-processor)
    where it has one, else its vocabulary; plus padding/truncation sides, special tokens and its class."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    h.update(json.dumps([type(tokenizer).__name__, tokenizer.padding_side, tokenizer.truncation_side,
                         str(tokenizer.model_max_length), sorted(map(str, tokenizer.all_special_tokens))]).encode())
    return h.hexdigest()


def _source_hash(task) -> str:
    """The code that prepares features: the task's module (or package) and the shared task helpers."""
    from ..tasks import base

    h = hashlib.sha256()
    for obj in (type(task), base):
        path = Path(inspect.getsourcefile(obj))
        files = sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()


def features_key(task, tokenizer, arch, max_length: int, content_hashes: dict) -> str:
    spec = task.spec.model_dump(mode="json", exclude=set(TRAINING_ONLY))
    parts = {"version": CACHE_VERSION, "task": spec, "code": _source_hash(task), "tokenizer": tokenizer_fingerprint(tokenizer),
             "architecture": getattr(arch, "name", str(arch)), "max_length": max_length, "data": content_hashes}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class CacheUse:
    """What one preparation did: maps loaded from the cache and maps computed (and stored)."""

    folder: Path
    hits: list = field(default_factory=list)
    misses: list = field(default_factory=list)

    def summary(self) -> dict:
        return {"key": self.folder.name[:16], "hit": bool(self.hits) and not self.misses,
                "loaded": len(self.hits), "computed": len(self.misses)}


_ACTIVE: ContextVar[CacheUse | None] = ContextVar("peftbench_features_cache", default=None)


@contextmanager
def features_cache(folder: Path | None):
    """Within the block, ``cached_map`` loads or stores under ``folder`` (None: no caching)."""
    use = CacheUse(Path(folder)) if folder is not None else None
    token = _ACTIVE.set(use)
    try:
        yield use
    finally:
        _ACTIVE.reset(token)


def cached_map(ds, fn, name: str, **kw):
    """``ds.map(fn, batched=True, remove_columns=...)``, read from / written to the active cache."""
    from datasets import load_from_disk

    use = _ACTIVE.get()
    # datasets' own fingerprint cache is bypassed: this cache (or none, with train.cache_features off) decides
    kw = {"batched": True, "remove_columns": ds.column_names, "desc": name, "load_from_cache_file": False, **kw}
    if use is None:
        return ds.map(fn, **kw)
    target = use.folder / name.replace(" ", "-").replace("/", "_")
    if (target / "dataset_info.json").exists():
        use.hits.append(name)
        return load_from_disk(str(target))
    out = ds.map(fn, **kw)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    out.save_to_disk(str(tmp))
    try:
        os.replace(tmp, target)  # atomic; fails if another runner stored it first (then its copy is kept)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    use.misses.append(name)
    return load_from_disk(str(target))
