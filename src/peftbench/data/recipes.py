"""Named data recipes: build train/validation/test from a known corpus layout (``recipe:<name>``)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from typing import Optional

from ..config import DataSpec
from ..options import Options
from .loading import DataError, shared_root


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def demo_sentiment(spec: DataSpec):
    """The project's own English sentiment set (authored for peftbench; rows carry their split)."""
    from datasets import Dataset, DatasetDict

    rows = _jsonl(Path(str(resources.files("peftbench.data") / "demo_sentiment.jsonl")))
    return DatasetDict({s: Dataset.from_list([{"text": r["text"], "label": r["label"]} for r in rows if r["split"] == s])
                        for s in ("train", "validation", "test")})


def parsinlu_food_binary(spec: DataSpec):
    """ParsiNLU document-level food sentiment (Persian).

    ParsiNLU has no document-level split: reviews that appear in the aspect files ``food_dev.jsonl`` /
    ``food_test.jsonl`` are validation / test, all other reviews of ``food.jsonl`` are train.  The
    ``label`` column holds the raw sentiment (-2..2, 3 = mixed); map it with ``data.label_map``
    (the binary task maps -2/-1 to negative, 1/2 to positive and drops 0 and 3).
    """
    root = Path(spec.path).expanduser() if spec.path else (shared_root() / "parsinlu" if shared_root() else None)
    folder = root / "data" / "sentiment-analysis" if root else None
    if folder is None or not (folder / "food.jsonl").exists():
        raise DataError(f"ParsiNLU sentiment files not found under '{folder}'; set data.path to the parsinlu "
                        "folder or PEFTBENCH_DATA to the datasets folder")
    dev = {r["review"] for r in _jsonl(folder / "food_dev.jsonl")}
    test = {r["review"] for r in _jsonl(folder / "food_test.jsonl")}
    splits: dict[str, list] = {"train": [], "validation": [], "test": []}
    for r in _jsonl(folder / "food.jsonl"):
        split = "test" if r["review"] in test else "validation" if r["review"] in dev else "train"
        splits[split].append({"text": r["review"], "label": str(r["sentiment"])})
    return _splits(splits)


def _splits(rows: dict):
    from datasets import Dataset, DatasetDict

    return DatasetDict({k: Dataset.from_list(v) for k, v in rows.items()})


class NusaxOptions(Options):
    languages: Optional[list[str]] = None  # a subset of NusaX's 12 languages (default: all)


def nusax_sentiment(spec: DataSpec):
    """NusaX sentiment in its 12 languages (English, Indonesian and 10 Indonesian local languages), one
    dataset with a ``language`` column: use ``data.group: language`` for per-language test metrics and
    ``data.train_groups`` for cross-lingual / zero-shot runs. ``data.options.languages`` picks a subset. The
    languages are aligned translations of the same sentences: ``sentence`` (the split and NusaX's row id) names
    each row's source sentence, for ``data.cluster: sentence`` (the paired comparisons resample sentences)."""
    root = Path(spec.path).expanduser() if spec.path else (shared_root() / "nusax" if shared_root() else None)
    folder = root / "datasets" / "sentiment" if root else None
    if folder is None or not folder.is_dir():
        raise DataError(f"NusaX sentiment not found under '{folder}'; set data.path to the nusax folder or "
                        "PEFTBENCH_DATA to the datasets folder")
    langs = spec.options.get("languages") or sorted(p.name for p in folder.iterdir() if p.is_dir())
    missing = [lang for lang in langs if not (folder / lang).is_dir()]
    if missing:
        raise DataError(f"data.options.languages: {missing} not in NusaX "
                        f"({', '.join(sorted(p.name for p in folder.iterdir() if p.is_dir()))})")
    import csv

    splits: dict[str, list] = {"train": [], "validation": [], "test": []}
    for lang in langs:
        for split, fname in (("train", "train.csv"), ("validation", "valid.csv"), ("test", "test.csv")):
            with open(folder / lang / fname, encoding="utf-8", newline="") as f:
                splits[split] += [{"text": r["text"], "label": r["label"], "language": lang,
                                   "sentence": f"{split}-{r['id']}"} for r in csv.DictReader(f)]
    return _splits(splits)


nusax_sentiment.Options = NusaxOptions
