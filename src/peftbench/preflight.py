"""Checks before any run starts (``peftbench validate`` and ``peftbench run``): what the schema cannot see —
local files and folders exist, named recipes, tiny families and packages are known, hub models are reachable
offline, the output folder can be a folder. Each problem is one line naming the field. Imports no torch."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from . import registry
from .config import GridSpec
from .trackers import missing

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".conll", ".bio", ".iob")


def looks_local(source: str) -> bool:
    """A path, not a hub id (``org/name``): absolute, relative, home-based, with a file suffix, or not of the
    form org/name."""
    if source.startswith(("/", "./", "../", "~", ".\\")) or Path(source).expanduser().exists():
        return True
    if source.lower().endswith(DATA_SUFFIXES + (".gguf",)):
        return True
    return source.count("/") != 1


SCHEMES = ("tiny", "package", "recipe")  # source prefixes: tiny:<family>, package:<module>/<path>, recipe:<name>


def source_kind(source: str) -> str:
    """What a model or data ``source`` names: one of SCHEMES (by its prefix), "local" or "hub" (``org/name``)."""
    scheme, sep, _ = source.partition(":")
    if sep and scheme in SCHEMES:
        return scheme
    return "local" if looks_local(source) else "hub"


def _exists(field: str, path: str, what: str) -> str | None:
    p = Path(path).expanduser()
    if not p.exists():
        return f"{field}: {what} '{path}' does not exist (resolved: {p.resolve()}); check the path"
    if not os.access(p, os.R_OK):
        return f"{field}: {what} '{path}' is not readable"
    return None


def _model(i: int, spec) -> str | None:
    field, src = f"models[{i}].source", spec.source
    kind = source_kind(src)
    if kind == "tiny":
        name = src.split(":", 1)[1]
        if name not in registry.names("tiny"):
            return f"{field}: '{name}' is not a tiny family; allowed: {', '.join(registry.names('tiny'))}"
        return None
    if kind == "package":
        module = src.split(":", 1)[1].partition("/")[0]
        if importlib.util.find_spec(module) is None:
            return f"{field}: Python package '{module}' is not installed; pip install it"
        return None
    if kind in ("local", "recipe"):  # a recipe is not a model source: the file check names what is wrong
        return (_exists(field, src, "model file or folder") or _weights_intact(field, Path(src).expanduser())
                or _tokenizer_present(field, Path(src).expanduser()))
    return _hub(field, src, "model")


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "sentencepiece.model")


def _tokenizer_present(field: str, path: Path) -> str | None:
    """A checkpoint folder holds a tokenizer's vocabulary: without one transformers builds an empty tokenizer, every
    word becomes the unknown token and the run trains on it at chance without a word (a .gguf file carries its own)."""
    if not path.is_dir() or not (path / "config.json").exists():
        return None
    if any((path / name).exists() for name in TOKENIZER_FILES) or any(path.glob("*.tiktoken")):
        return None
    return (f"{field}: model folder '{path}' has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...): "
            "every word would become the unknown token; copy the tokenizer files from the checkpoint you took the "
            "weights from")


def _weights_intact(field: str, path: Path) -> str | None:
    """Every safetensors file's header is whole and its tensors end within the file (reads headers only)."""
    import json
    import struct

    for f in [path] if path.is_file() else sorted(path.glob("*.safetensors")):
        if f.suffix != ".safetensors":
            continue
        size = f.stat().st_size
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n)) if 8 + n <= size else None
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0) \
                if header is not None else None
        except (struct.error, ValueError, KeyError, TypeError, AttributeError, IndexError):
            end = None
        if end is None or 8 + n + end > size:
            return f"{field}: weights file '{f}' is empty or truncated ({size} bytes); download or save it again"
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub's endpoint (once per process), instead of a library's retries per file."""
    global _REACHABLE
    if _REACHABLE is None:
        import socket
        from urllib.parse import urlparse

        url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout=timeout).close()
            _REACHABLE = True
        except OSError:
            _REACHABLE = False
    return _REACHABLE


_REACHABLE: bool | None = None


def _cached(repo: str, kind: str) -> bool:
    """Whether the Hugging Face cache holds any snapshot of ``repo`` (a model or a dataset)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{kind}s--{repo.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def _hub(field: str, repo: str, kind: str) -> str | None:
    """A hub id: fine online; offline (HF_HUB_OFFLINE=1, or the hub unreachable) it must be in the local cache."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable()
    if offline and not _cached(repo, kind):
        why = "HF_HUB_OFFLINE=1" if _REACHABLE is None else "the hub cannot be reached from this machine"
        where = "a local checkpoint folder" if kind == "model" else "local CSV/TSV/JSON/JSONL files"
        return f"{field}: hub {kind} '{repo}' is not in the local cache and {why}; download it first or give {where}"
    return None


def _hub_ids(grid: GridSpec) -> list[str]:
    sources = [m.source for m in grid.models] + [t.data.source for t in grid.tasks]
    return [s for s in sources if source_kind(s) == "hub"]


def offline_env(grid: GridSpec) -> dict:
    """What the environment of a grid's runs needs: offline mode (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``)
    where the grid names hub ids and the hub cannot be reached, so that ids in the local cache load without a
    library's retries per file; empty otherwise. ``check`` only reads the environment; the caller applies this."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_ids(grid) or hub_reachable():
        return {}
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _data(i: int, task) -> list[str]:
    d, field = task.data, f"tasks[{i}].data"
    out = []
    kind = source_kind(d.source)
    if kind == "recipe":
        name = d.source.split(":", 1)[1]
        if name not in registry.names("recipe"):
            out.append(f"{field}.source: '{name}' is not a known recipe; allowed: {', '.join(registry.names('recipe'))}")
        if d.path:
            out.append(_exists(f"{field}.path", d.path, "folder"))
        return out
    if kind == "hub":
        return [_hub(f"{field}.source", d.source, "dataset")]
    problem = _exists(f"{field}.source", d.source, "data file or folder")
    if problem:
        return [problem]
    return [_exists(f"{field}.{key}", str(p), "file") for key, p in _split_files(task).items()
            if key.startswith(("splits.", "options."))]


SMALL_DATA_BYTES = 20 * 2**20  # local data up to this size is read in full by the check


def _data_size(source: str) -> int | None:
    p = Path(source).expanduser()
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


HEAD_LINES = 2000  # a large local file is checked on its first lines
WHOLE_FILE_ONLY = ("only one class",)  # what a file's head cannot decide (a sorted file starts with one class)


def _head(src: Path, dst: Path) -> bool:
    """Copy the first HEAD_LINES lines of a line-based file; False for one JSON document (it cannot be cut)."""
    with open(src, "rb") as f:
        first = f.readline()
        if src.suffix.lower() == ".json":
            import json

            try:
                if not isinstance(json.loads(first), dict):
                    return False
            except ValueError:
                return False
        lines = [first] + [line for _, line in zip(range(HEAD_LINES - 1), f)]
    dst.write_bytes(b"".join(lines))
    return True


def _split_files(task) -> dict[str, Path]:
    """Every local file a task reads, by the field naming it (as the loader resolves them)."""
    d = task.data
    root = Path(d.source).expanduser()
    base = root if root.is_dir() else Path(".")  # line-aligned files: relative to a folder source, else the cwd
    files = {} if root.is_dir() else {"source": root}
    for split, name in d.splits.items():
        p = Path(name).expanduser()
        files[f"splits.{split}"] = p if p.is_absolute() else root / p
    for key in ("source_file", "target_file"):
        if d.options.get(key):
            p = Path(d.options[key]).expanduser()
            files[f"options.{key}"] = p if p.is_absolute() else base / p
    if root.is_dir() and not d.splits:
        for p in sorted(root.iterdir()):
            if p.is_file() and p.suffix.lower() in DATA_SUFFIXES:
                files[f"file:{p.name}"] = p
    return files


def _heads_of(task, folder: Path, copies: dict):
    """The task with every local file replaced by its head (in ``folder``; ``copies`` gets copy -> original);
    None where a file cannot be cut."""
    d = task.data
    root = Path(d.source).expanduser()
    new_root = folder / "data"
    new_root.mkdir()
    update: dict = {"splits": dict(d.splits), "options": dict(d.options)}
    for n, (key, path) in enumerate(_split_files(task).items()):
        dst = new_root / path.name if key.startswith("file:") or key == "source" else folder / f"{n}-{path.name}"
        if path.is_file() and not _head(path, dst):
            return None
        copies[str(dst)] = str(path)
        kind, _, name = key.partition(".")
        if kind in ("splits", "options"):
            update[kind][name] = str(dst)
    source = new_root / root.name if root.is_file() else new_root
    copies[str(source)] = str(root)
    return task.model_copy(update={"data": d.model_copy(update={"source": str(source), **update})})


def _read_data(i: int, task) -> str | None:
    """Load a task's data as the run will (columns, label values, label maps, answers): small local files in full,
    large ones by the first HEAD_LINES lines of each file, recipes as they are; hub datasets are left to the run."""
    import tempfile

    import datasets

    from .data.loading import DataError

    src, field, copies = task.data.source, f"tasks[{i}].data", {}
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="peftbench-head-") as tmp:
        kind = source_kind(src)
        if kind != "recipe":
            size = _data_size(src) if kind == "local" else None
            if size is None:
                return None
            if size > SMALL_DATA_BYTES:
                task = _heads_of(task, Path(tmp), copies)
                if task is None:
                    return None
                field += f" (checked on the first {HEAD_LINES} lines of each file)"
        try:
            registry.get("task", task.type)(task).load()
        except DataError as exc:
            if copies and any(w in str(exc) for w in WHOLE_FILE_ONLY):
                return None
            message = str(exc)
            for copy, original in sorted(copies.items(), key=lambda kv: -len(kv[0])):  # name the user's files
                message = message.replace(copy, original)
            return f"{field}: {message}"
    return None


def _quantization(i: int, q) -> str | None:
    """A quantised base needs bitsandbytes and a CUDA GPU: refused here, before any run, where either is missing."""
    field = f"models[{i}].quantization"
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"{field}: {q.describe()} loading needs bitsandbytes, which is not installed; pip install bitsandbytes"
    import torch

    if not torch.cuda.is_available():
        return (f"{field}: {q.describe()} bitsandbytes models need a CUDA GPU and this machine has none; run the grid "
                "on a GPU, or drop quantization to train the base in full precision here")
    return None


def check(grid: GridSpec, read_data: bool = True, here: bool = True) -> list[str]:
    """Every problem found, one line each (empty: ready to run). ``read_data`` also loads small local data and
    recipes the way the runs will, so a wrong column or label value is caught before any model loads. ``here``:
    the grid runs on this machine (False for ``plan --target``: what this machine lacks to run it is no
    problem)."""
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
    for i, model in enumerate(grid.models):
        if model.quantization is not None and here:
            problems.append(_quantization(i, model.quantization))
    for name in grid.train.trackers:
        problems.append((lambda why: f"train.trackers: {why}" if why else None)(missing(name)))
    searching = [i for i, m in enumerate(grid.methods) if m.sweep and m.sweep.optuna is not None]
    if searching and importlib.util.find_spec("optuna") is None:
        problems.append(f"methods[{searching[0]}].sweep.optuna: needs optuna, which is not installed; pip install "
                        "'peftbench[optuna]'")
    if here and grid.train.optimizer == "adamw_8bit" and importlib.util.find_spec("bitsandbytes") is None:
        problems.append("train.optimizer: adamw_8bit needs bitsandbytes, which is not installed; pip install "
                        "bitsandbytes (CUDA), or use adamw")
    launcher = grid.train.launcher
    if launcher and launcher.config_file:
        from .run.distributed import sharded_config

        problems.append(_exists("train.launcher.config_file", launcher.config_file, "accelerate config file"))
        kind = sharded_config(launcher.config_file)
        conflict = grid.train.fsdp_conflict() if kind == "FSDP" and not launcher.fsdp else None
        if conflict:
            problems.append(f"train.{conflict[0]}: {conflict[1]} (train.launcher.config_file is of distributed_type FSDP)")
        if kind and kind != "FSDP":
            problems.append(f"train.launcher.config_file: distributed_type {kind} is not supported (peftbench keeps and "
                            "saves replicated or FSDP2-sharded weights); to shard the model use an accelerate config of "
                            "distributed_type FSDP, or train.launcher.fsdp: true")
    text = grid.train.analysis.forgetting_text
    if text:
        problems.append(_exists("train.analysis.forgetting_text", text, "file"))
    return [p for p in problems if p]
