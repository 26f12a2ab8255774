"""train.class_weights: a weighted cross-entropy for classification, token classification and multiple choice,
checked against the formula (n / (k * count)), torch's reference loss by hand, and recorded with the run."""
import json
import math
import random
from collections import Counter

import pytest
import torch

from conftest import toy_grid, write_toy_choice, write_toy_ner
from peftbench.config import ConfigError, ModelSpec, TaskSpec, expand, load_grid
from peftbench.models import inspect_model
from peftbench.run.recipe import execute
from peftbench.tasks.base import class_weights, cross_entropy


def write_imbalanced(path, n=300, positive=0.85, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            lab = "pos" if rng.random() < positive else "neg"
            word = rng.choice(["good", "great"] if lab == "pos" else ["bad", "awful"])
            f.write(json.dumps({"text": f"a {word} {rng.choice(['meal', 'day'])}", "label": lab}) + "\n")
    return path


def prepared(task_type, source, **data):
    from peftbench import registry

    spec = TaskSpec(name="t", type=task_type, data={"source": str(source), **data})
    task = registry.get("task", task_type)(spec)
    _, tok, arch, _ = inspect_model(ModelSpec(source="tiny:bert"))
    return task.prepare(task.load(), tok, arch, 48)


def by_hand(prep):
    """n / (k * count_c) over the training targets (ignored positions left out), k = classes present."""
    targets = []
    for row in prep.features["train"]["labels"]:
        targets += [x for x in (row if isinstance(row, list) else [row]) if x != -100]
    counts = Counter(targets)
    return {name: len(targets) / (len(counts) * counts[i]) if counts[i] else 1.0 for i, name in enumerate(prep.labels)}


@pytest.mark.parametrize("seed", range(3))
def test_balanced_weights_are_the_formula(tmp_path, seed):
    prep = prepared("classification", write_imbalanced(tmp_path / "d.jsonl", positive=0.6 + 0.1 * seed, seed=seed))
    got = class_weights(prep, "balanced", "t")
    assert got == pytest.approx(by_hand(prep)) and got["neg"] > got["pos"]
    (tmp_path / "ner").mkdir()
    write_toy_ner(tmp_path / "ner" / "train.txt", seed=seed)
    ner = prepared("token_classification", tmp_path / "ner")
    weights = class_weights(ner, "balanced", "t")
    assert weights == pytest.approx(by_hand(ner)) and weights["O"] == min(weights.values())  # O is the most common
    mc = prepared("multiple_choice", write_toy_choice(tmp_path / "c.jsonl"), text="premise", options={"label_base": 1})
    assert class_weights(mc, "balanced", "t") == pytest.approx(by_hand(mc)) and set(mc.labels) == {"choice1", "choice2"}


def test_a_map_names_labels(tmp_path):
    prep = prepared("classification", write_imbalanced(tmp_path / "d.jsonl"))
    assert class_weights(prep, {"neg": 4.0}, "t") == {"neg": 4.0, "pos": 1.0}  # unnamed labels: 1.0
    with pytest.raises(ValueError, match=r"\['negative'\] are not labels of task 't'; its labels: "):
        class_weights(prep, {"negative": 2.0}, "t")
    assert class_weights(prep, None, "t") is None


def test_weighted_cross_entropy_is_the_weighted_mean():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(7, 5, 3, generator=g), torch.randint(0, 3, (7, 5), generator=g)
    targets[0, :2] = -100
    w = torch.tensor([0.5, 2.0, 3.0])
    logp = logits.log_softmax(-1)
    keep = targets != -100
    picked = logp[keep].gather(-1, targets[keep][:, None]).squeeze(-1)
    expected = -(w[targets[keep]] * picked).sum() / w[targets[keep]].sum()
    assert cross_entropy(logits, targets, w).item() == pytest.approx(expected.item(), rel=1e-6)
    assert cross_entropy(logits, targets).item() == pytest.approx(-picked.mean().item(), rel=1e-6)


def test_config_checks_where_weights_apply(tmp_path):
    data = toy_grid(tmp_path / "x.jsonl", tmp_path / "r", models=["tiny:bert"], methods=["lora"], class_weights="balanced")
    assert load_grid(data=data).train.class_weights == "balanced"
    data["tasks"][0]["type"] = "seq2seq"
    with pytest.raises(ConfigError, match=r"<config>: train.class_weights: weights the loss of .*classification.*; "
                                          r"tasks\[0\] \('toy'\) is seq2seq"):
        load_grid(data=data)
    data["tasks"][0]["type"] = "classification"
    data["train"]["class_weights"] = {"pos": 0}
    with pytest.raises(ConfigError, match="class_weights"):
        load_grid(data=data)
    data["train"]["class_weights"] = "inverse"
    with pytest.raises(ConfigError, match="class_weights"):
        load_grid(data=data)
    plain = expand(load_grid(data={**data, "train": {"lr": 5e-3}}))[0].run_id
    weighted = expand(load_grid(data={**data, "train": {"lr": 5e-3, "class_weights": "balanced"}}))[0].run_id
    assert plain != weighted  # part of what the run is


def test_a_weighted_run_records_its_weights_and_trains(tmp_path):
    data = toy_grid(write_imbalanced(tmp_path / "d.jsonl", n=200), tmp_path / "r", models=["tiny:bert"],
                    methods=["full"], epochs=1, class_weights="balanced", threads=1)
    run = expand(load_grid(data=data))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    weights = result.training.class_weights
    assert set(weights) == {"neg", "pos"} and weights["neg"] > 1 > weights["pos"]
    assert math.isfinite(result.test.loss) and result.training.optimizer_steps > 0
