"""Tokenised features cached on disk (Arrow), shared by every run of a grid and by later grids.

A run's features are a function of the task's data as loaded (its content hashes), the task's spec and code,
the tokenizer (its full serialisation), the architecture and ``max_length``; the key hashes all of them, so a
second run over the same data and tokenizer loads memory-mapped Arrow files instead of tokenising again.
Entries are written to a temporary folder and renamed into place (two runners preparing the same key at once
both succeed; one copy is kept). The folder is ``$PEFTBENCH_CACHE/features`` (default ``~/.cache/peftbench/features``);
deleting it is always safe. ``train.cache_features: false`` turns it off for a grid.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CACHE_VERSION = 1


def peftbench_cache() -> Path:
    """``$PEFTBENCH_CACHE`` (default ``~/.cache/peftbench``): the one folder peftbench caches in (``features/``,
    ``gguf/``); deleting it is always safe."""
    return Path(os.environ.get("PEFTBENCH_CACHE") or Path.home() / ".cache" / "peftbench").expanduser()


def cache_root() -> Path:
    """The features cache: ``$PEFTBENCH_CACHE/features``."""
    return peftbench_cache() / "features"


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


def features_key(spec: dict, code: str, tokenizer, arch, max_length: int, content_hashes: dict) -> str:
    """The key of a run's features: the task's fields they depend on (``config.features_fields``), the hash of the
    code that prepares them (tasks/base.source_hash), the tokenizer, the architecture, ``max_length`` and the
    data's content hashes."""
    parts = {"version": CACHE_VERSION, "task": spec, "code": code, "tokenizer": tokenizer_fingerprint(tokenizer),
             "architecture": getattr(arch, "name", str(arch)), "max_length": max_length, "data": content_hashes}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class FeaturesCache:
    """One folder of the cache (one features key), handed to ``task.prepare``; records what it loaded (hits) and
    what it computed and stored (misses)."""

    folder: Path
    hits: list = field(default_factory=list)
    misses: list = field(default_factory=list)

    def summary(self) -> dict:
        return {"key": self.folder.name[:16], "hit": bool(self.hits) and not self.misses,
                "loaded": len(self.hits), "computed": len(self.misses)}


def cached_map(ds, fn, name: str, cache: FeaturesCache | None = None, **kw):
    """``ds.map(fn, batched=True, remove_columns=...)``, read from / written to ``cache`` (None: computed)."""
    from datasets import load_from_disk

    # datasets' own fingerprint cache is bypassed: this cache (or none, with train.cache_features off) decides
    kw = {"batched": True, "remove_columns": ds.column_names, "desc": name, "load_from_cache_file": False, **kw}
    if cache is None:
        return ds.map(fn, **kw)
    target = cache.folder / name.replace(" ", "-").replace("/", "_")
    if (target / "dataset_info.json").exists():
        cache.hits.append(name)
        return load_from_disk(str(target))
    out = ds.map(fn, **kw)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    out.save_to_disk(str(tmp))
    try:
        os.replace(tmp, target)  # atomic; fails if another runner stored it first (then its copy is kept)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    cache.misses.append(name)
    return load_from_disk(str(target))
