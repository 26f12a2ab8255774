import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

def store_rows(out: Path):
    """(run_id, status, result, updated, trainable_params, peak_memory_mb) of every row in a results store, and the
    number of stored curve points per run."""
    import sqlite3

    db = sqlite3.connect(out / "peftbench.sqlite")
    rows = db.execute("SELECT run_id, status, result, updated, trainable_params, peak_memory_mb FROM runs").fetchall()
    curves = db.execute("SELECT run_id, COUNT(*) FROM curves GROUP BY run_id").fetchall()
    db.close()
    return rows, dict(curves)


def seq_head(n: int = 2):
    """A sequence-classification head with n labels (what a classification task asks of the model)."""
    from peftbench.families import Head, HeadKind

    return Head(HeadKind.SEQUENCE, labels=tuple(f"l{i}" for i in range(n)))


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


def write_toy_choice(path: Path, n: int = 300, seed: int = 0) -> Path:
    """A learnable toy COPA: the right choice carries a 'good' word; 1-based labels like HuCoPA."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            right = f"a {rng.choice(['good', 'great', 'lovely'])} {rng.choice(['meal', 'day'])}"
            wrong = f"a {rng.choice(['bad', 'awful', 'poor'])} {rng.choice(['meal', 'day'])}"
            label = rng.choice([1, 2])
            c1, c2 = (right, wrong) if label == 1 else (wrong, right)
            f.write(json.dumps({"premise": f"it was item {i % 7}", "question": rng.choice(["cause", "effect"]),
                                "choice1": c1, "choice2": c2, "label": str(label)}) + "\n")
    return path


def write_toy_translation(path: Path, n: int = 300, seed: int = 0) -> Path:
    """A learnable toy translation: reverse a short word list and map each word through a fixed lexicon."""
    rng = random.Random(seed)
    lex = {"cat": "gato", "dog": "perro", "red": "rojo", "big": "grande", "sun": "sol", "sea": "mar"}
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            words = [rng.choice(list(lex)) for _ in range(rng.randint(1, 3))]
            f.write(json.dumps({"en": " ".join(words), "es": " ".join(lex[w] for w in words)}) + "\n")
    return path


def write_toy_ner(path: Path, n: int = 300, seed: int = 0, sep: str = "|") -> Path:
    """A learnable toy NER in PEYMA's layout (token|TAG, B_/I_ prefixes): capitalised names are people."""
    rng = random.Random(seed)
    names = [("Ali", "Rezaei"), ("Sara",), ("Mina", "Karimi"), ("Reza",)]
    places = [("Tehran",), ("Shiraz",), ("New", "York")]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            words = []
            for _ in range(rng.randint(2, 5)):
                r = rng.random()
                if r < 0.25:
                    ent, t = rng.choice(names), "PER"
                elif r < 0.45:
                    ent, t = rng.choice(places), "LOC"
                else:
                    ent, t = (rng.choice(["went", "to", "saw", "the", "city", "and"]),), None
                words += [(w, "O" if t is None else f"{'B' if j == 0 else 'I'}_{t}") for j, w in enumerate(ent)]
            f.write("".join(f"{w}{sep}{t}\n" for w, t in words) + "\n")
    return path


def write_toy_qa(path: Path, n: int = 300, seed: int = 0, unanswerable: bool = False) -> Path:
    """A learnable toy span QA in ParsiNLU's jsonl layout (answers = [[start, text]]): the answer follows 'is'."""
    rng = random.Random(seed)
    fillers = ["we met", "it rained", "they sang", "all good", "so far"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            word = rng.choice(["red", "blue", "green", "gold", "pink"])
            before = " ".join(rng.choice(fillers) for _ in range(rng.randint(0, 3)))
            after = " ".join(rng.choice(fillers) for _ in range(rng.randint(0, 3)))
            passage = f"{before} the key is {word} . {after}".strip()
            answers = [[passage.index(f"is {word}") + 3, word]]
            if unanswerable and i % 4 == 0:
                passage, answers = f"{before} no key here . {after}".strip(), []
            f.write(json.dumps({"question": "what is the key ?", "passage": passage, "answers": answers}) + "\n")
    return path


def write_toy_multilabel(path: Path, n: int = 300, seed: int = 0) -> Path:
    """A learnable toy framing task: each topic word present adds its label (0-3 labels per row)."""
    rng = random.Random(seed)
    topics = {"tax": "economy", "vote": "politics", "virus": "health"}
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            words = rng.sample(list(topics), rng.randint(0, 3))
            text = " ".join(words + rng.sample(["the", "news", "today", "said"], 2))
            f.write(json.dumps({"text": text, "frames": ";".join(topics[w] for w in words)}) + "\n")
    return path
