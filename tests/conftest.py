import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"
FAMILIES = ["tiny:bert", "tiny:t5", "tiny:gpt2", "tiny:llama"]
METHODS = ["full", "lora", "dora", "adalora"]


def write_toy(path: Path, n: int = 400, seed: int = 0) -> Path:
    """A learnable toy sentiment task: the label is carried by one keyword."""
    rng = random.Random(seed)
    pos, neg = ["good", "great", "lovely"], ["bad", "awful", "poor"]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            lab = rng.choice(["pos", "neg"])
            word = rng.choice(pos if lab == "pos" else neg)
            f.write(json.dumps({"text": f"a {word} {rng.choice(['meal', 'film', 'day', 'trip'])}", "label": lab}) + "\n")
    return path


@pytest.fixture
def toy(tmp_path) -> Path:
    return write_toy(tmp_path / "toy.jsonl")


def toy_grid(toy_path, out, models=FAMILIES, methods=METHODS, **train):
    base = {"lr": 5e-3, "epochs": 3, "batch_size": 16, "patience": None}
    base.update(train)
    return {"name": "toy", "output_dir": str(out), "models": list(models), "methods": list(methods),
            "tasks": [{"name": "toy", "data": {"source": str(toy_path)}}], "seeds": [42], "train": base}
