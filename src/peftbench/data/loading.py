"""Load a task's raw splits from a hub id, local files or a named recipe, as a ``DatasetDict``
with ``train``, ``validation`` and ``test``.  Nothing is dropped silently: every removed row is
counted in the returned report, which is stored with the run."""
from __future__ import annotations

import os
from pathlib import Path

from .. import registry
from ..config import DataSpec
from ..errors import OneLine, first_line

SPLIT_SEED = 1234  # data splits carved from train are the same for every run seed (paired comparisons)
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test", "eval")}
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


class DataError(OneLine, ValueError):
    """A one-line, user-facing data error."""


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (datasets wraps a reader's error in DatasetGenerationError)."""
    seen = set()
    while id(exc) not in seen:  # ``raise ... from None`` ends the chain: what it hid is not the cause
        seen.add(id(exc))
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None:
            break
        exc = nxt
    return exc


def reraise_data_error(exc: BaseException, what: str):
    """Our own DataError inside a library's wrapper comes out as it is; anything else as one line naming ``what``."""
    cause = root_cause(exc)
    if isinstance(cause, DataError):
        raise cause from None
    raise DataError(f"{what}: {first_line(cause)}") from None


def shared_root() -> Path | None:
    """The shared datasets folder: $PEFTBENCH_DATA, else ../shared/datasets from the cwd or the repo."""
    cands = [os.environ.get("PEFTBENCH_DATA"), Path.cwd().parent / "shared" / "datasets",
             Path(__file__).resolve().parents[4] / "shared" / "datasets"]
    for c in cands:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def load_raw(spec: DataSpec, reader=None) -> tuple:
    """``reader(path) -> Dataset or None``: a task's own reader for local files (e.g. CoNLL, SQuAD JSON);
    None falls back to the CSV / TSV / JSON / JSONL reader."""
    report: dict = {"source": spec.source}
    if spec.source.startswith("recipe:"):
        name = spec.source.split(":", 1)[1]
        try:
            fn = registry.get("recipe", name)
        except ValueError as exc:
            raise DataError(f"data.source '{spec.source}': {exc}") from None
        dd = fn(spec)
    elif Path(spec.source).expanduser().exists():
        dd = _local(spec, reader)
    else:
        dd = _hub(spec)
    dd = _ensure_splits(dd, spec, report)
    if spec.group:
        dd = _groups(dd, spec, report)
    if spec.cluster:
        dd = _clusters(dd, spec, report)
    dd = cap_splits(dd, spec, report)
    report["rows"] = {k: len(v) for k, v in dd.items()}
    return dd, report


def content_hash(ds) -> str:
    """SHA-256 of a split's rows as used (after label maps, caps and filters), in order: two runs with the same
    hash saw the same data."""
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps(ds.column_names).encode())
    for batch in ds.iter(batch_size=10_000):
        h.update(json.dumps(batch, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()


def cap_splits(dd, spec: DataSpec, report: dict):
    """``max_train_samples`` / ``max_eval_samples`` / ``max_test_samples`` (test falls back to the eval cap): a
    fixed-seed sample of each split, recorded."""
    test_cap = spec.max_test_samples or spec.max_eval_samples
    for split, cap in (("train", spec.max_train_samples), ("validation", spec.max_eval_samples), ("test", test_cap)):
        if cap and len(dd[split]) > cap:
            report.setdefault("capped", {})[split] = [len(dd[split]), cap]
            dd[split] = dd[split].shuffle(seed=SPLIT_SEED).select(range(cap))
    return dd


def _read(path: Path, delimiter: str | None = None):
    from datasets import load_dataset

    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"data file '{path}': unsupported extension '{path.suffix}'; use one of {', '.join(FORMATS)}")
    from datasets.utils import logging as datasets_logging

    kw = {"delimiter": delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")} if fmt == "csv" else {}
    level = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)  # its own log line of a parse error would be a second line
    try:
        return load_dataset(fmt, data_files=str(path), split="train", **kw)
    except Exception as exc:  # datasets raises many types; the user needs the file and the line
        reraise_data_error(exc, f"data file '{path}' could not be parsed as {fmt}")
    finally:
        datasets_logging.set_verbosity(level)


def _local(spec: DataSpec, reader=None):
    from datasets import DatasetDict

    root = Path(spec.source).expanduser()

    def read(p: Path):
        try:
            ds = reader(p) if reader else None
        except UnicodeDecodeError as exc:
            raise DataError(f"data file '{p}': not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        except Exception as exc:  # a task's reader met something it does not handle: name the file, not the library
            reraise_data_error(exc, f"data file '{p}' could not be read")
        return ds if ds is not None else _read(p, spec.delimiter)

    if root.is_file():
        return DatasetDict({"train": read(root)})
    files = {}
    if spec.splits:
        for split, f in spec.splits.items():
            p = Path(f).expanduser()
            p = p if p.is_absolute() else root / p
            if not p.exists():
                raise DataError(f"data.splits.{split}: file '{p}' does not exist")
            files[split] = p
    else:
        for p in sorted(root.iterdir()):
            for split, aliases in SPLIT_ALIASES.items():
                if p.suffix.lower() in (*FORMATS, *getattr(reader, "suffixes", ())) and p.stem.lower() in aliases:
                    files.setdefault(split, p)
        if "train" not in files:
            raise DataError(f"data.source '{root}': no train file found (train.csv/.tsv/.json/.jsonl"
                            f"{''.join('/' + x for x in getattr(reader, 'suffixes', ()))}); name the files with data.splits")
    return DatasetDict({k: read(v) for k, v in files.items()})


def _hub(spec: DataSpec):
    from datasets import DatasetDict, load_dataset

    try:
        dd = load_dataset(spec.source, spec.subset)
    except Exception as exc:
        first = first_line(exc)
        raise DataError(f"cannot load dataset '{spec.source}' from the Hugging Face hub ({first}); if this "
                        "machine is offline, point data.source at local CSV/TSV/JSON/JSONL files") from None
    if spec.splits:
        dd = DatasetDict({ours: dd[theirs] for ours, theirs in spec.splits.items()})
    return dd


def _ensure_splits(dd, spec: DataSpec, report: dict):
    from datasets import DatasetDict

    dd = DatasetDict({_canonical(k): v for k, v in dd.items()})
    if "train" not in dd:
        raise DataError(f"data.source '{spec.source}': no train split (found {', '.join(dd) or 'none'})")
    for split, frac in (("test", spec.test_fraction), ("validation", spec.validation_fraction)):
        if split not in dd:
            if frac <= 0 or len(dd["train"]) < 10:
                raise DataError(f"data.source '{spec.source}': no {split} split and none can be carved from train "
                                f"({len(dd['train'])} rows, {split}_fraction={frac})")
            parts = dd["train"].train_test_split(test_size=frac, seed=SPLIT_SEED)
            dd["train"], dd[split] = parts["train"], parts["test"]
            report.setdefault("carved", {})[split] = frac
    return DatasetDict({k: dd[k] for k in ("train", "validation", "test")})


def _clusters(dd, spec: DataSpec, report: dict):
    """Add ``_cluster`` (which test examples belong together, for the paired comparisons' resampling)."""
    for split, ds in dd.items():
        if spec.cluster not in ds.column_names:
            raise DataError(f"data.cluster: column '{spec.cluster}' not in the {split} data "
                            f"(columns: {', '.join(ds.column_names)})")
        values = ds[spec.cluster]
        if any(v is None for v in values):
            raise DataError(f"data.cluster: column '{spec.cluster}' has empty values in the {split} data; every row "
                            f"needs its cluster id")
        dd[split] = ds.add_column("_cluster", [str(v) for v in values])
    report["clusters"] = {split: len(set(ds["_cluster"])) for split, ds in dd.items()}
    return dd


def _groups(dd, spec: DataSpec, report: dict):
    """Add ``_group`` (the evaluation group, e.g. language); keep only ``train_groups`` in train/validation."""
    for split, ds in dd.items():
        if spec.group not in ds.column_names:
            raise DataError(f"data.group: column '{spec.group}' not in the {split} data "
                            f"(columns: {', '.join(ds.column_names)})")
        dd[split] = ds.add_column("_group", [str(v) for v in ds[spec.group]])
    found = {split: sorted(set(ds["_group"])) for split, ds in dd.items()}
    report["groups"] = found
    if spec.train_groups:
        unknown = sorted(set(spec.train_groups) - set(found["train"]))
        if unknown:
            raise DataError(f"data.train_groups: {unknown} not found in train's '{spec.group}' column "
                            f"(values: {', '.join(found['train'])})")
        keep = set(spec.train_groups)
        for split in ("train", "validation"):
            before = len(dd[split])
            dd[split] = dd[split].filter(lambda g: g in keep, input_columns="_group")
            report.setdefault("held_out_of_training", {})[split] = before - len(dd[split])
        report["zero_shot_groups"] = sorted(set(found["test"]) - keep)
    return dd


def _canonical(name: str) -> str:
    for split, aliases in SPLIT_ALIASES.items():
        if name.lower() in aliases:
            return split
    return name
