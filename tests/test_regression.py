"""The regression task (one module plus one registry line) and one truth per metric (issue 32): a lower-is-better
validation metric (MSE) read the right way round by early stopping, the ranking across tasks, the Pareto front,
the verdicts, and refused as a PES weight."""
import json
import random
import re

import numpy as np
import pytest

from peftbench.config import ConfigError, load_grid
from peftbench.report.aggregate import Cell
from peftbench.report.compare import compare, decide
from peftbench.report.plots import pareto_front
from peftbench.report.statistics import rank_methods
from peftbench.result import RunResult
from peftbench.run.folder import RunFolder
from peftbench.tasks.regression import regression_metrics


def write_toy_scores(path, n=240, seed=0):
    """A learnable toy similarity: the target is the number of 'good' words (0-3) plus a little noise."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            k = rng.randint(0, 3)
            words = ["good"] * k + [rng.choice(["day", "meal", "room"]) for _ in range(4 - k)]
            rng.shuffle(words)
            f.write(json.dumps({"text": " ".join(words), "label": k + rng.uniform(-0.1, 0.1)}) + "\n")
    return path


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_match_scipy_and_scikit_learn(seed):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(seed)
    y = rng.normal(size=50)
    p = y + rng.normal(scale=rng.uniform(0.1, 2), size=50)
    got = regression_metrics(list(p), list(y))
    assert got["pearson"] == pytest.approx(pearsonr(p, y)[0])
    assert got["spearman"] == pytest.approx(spearmanr(p, y)[0])
    assert got["mse"] == pytest.approx(mean_squared_error(y, p)) and got["mae"] == pytest.approx(mean_absolute_error(y, p))
    constant = regression_metrics([1.0] * 5, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert constant["pearson"] is None and constant["spearman"] is None and constant["mse"] == pytest.approx(3.0)


def test_a_regression_grid_trains_stops_on_the_lower_is_better_mse_and_ranks_it(tmp_path):
    from peftbench.report import render
    from peftbench.runner import run_grid
    from peftbench.store import Store

    data = write_toy_scores(tmp_path / "scores.jsonl")
    grid = load_grid(data={"name": "r", "output_dir": str(tmp_path / "out"), "models": ["tiny:bert"],
                           "methods": ["full", "lora"], "seeds": [1],
                           "tasks": [{"name": "sim", "type": "regression", "metric": "mse", "data": {"source": str(data)}},
                                     {"name": "sim-r", "type": "regression", "data": {"source": str(data)}}],
                           "train": {"epochs": 3, "lr": 5e-3, "batch_size": 16, "patience": None}})
    assert not run_grid(grid, in_process=True, show_progress=False).failed
    store = Store(tmp_path / "out")
    results = store.results()
    store.close()
    for result in results:
        assert set(result.test.metrics) == {"pearson", "spearman", "mse", "mae"}
        if result.task == "sim":  # the lowest validation MSE is the best epoch
            vals = {c["epoch"]: c["val_metrics"]["mse"] for c in result.curves if c["val_metrics"].get("mse") is not None}
            assert result.training.best_validation == pytest.approx(min(vals.values()))
            assert result.training.best_epoch == min(vals, key=vals.get)
    render(tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    mse = {r.method: r.test.metrics["mse"] for r in results if r.task == "sim"}
    ranking = report[report.index("## Ranking across tasks"):]
    first = min(mse, key=mse.get)  # rank 1 on the MSE block: the lower test MSE
    assert re.search(rf"\| {first} \| [0-9.]+ \| 1 \|", ranking), ranking[:600]


def test_bad_regression_input_is_one_line(tmp_path):
    from peftbench.config import expand
    from peftbench.data.loading import DataError
    from peftbench.run.recipe import execute

    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": f"a {i}", "label": "high" if i == 7 else i}) + "\n" for i in range(40)))
    grid = load_grid(data={"models": ["tiny:bert"], "methods": ["full"], "seeds": [1],
                           "tasks": [{"name": "sim", "type": "regression", "data": {"source": str(bad)}}]})
    with pytest.raises(DataError, match=r"has target 'high' in 'label'; a regression target is a finite number"):
        execute(expand(grid)[0], tmp_path / "run", show_progress=False)
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.pes_weights\.mse: 'mse' is lower-is-better"):
        load_grid(data={"models": ["tiny:bert"], "methods": ["full"],
                        "tasks": [{"name": "sim", "type": "regression", "data": {"source": "x.jsonl"},
                                   "pes_weights": {"pearson": 5, "mse": 5}}]})


def test_ranking_and_pareto_front_read_a_lower_is_better_metric_the_right_way_round():
    # two blocks: an accuracy (higher is better) and an MSE (lower is better); method b is best on both
    scores = np.array([[0.70, 0.90], [0.50, 0.20]])
    ranking = rank_methods(scores, ["a", "b"], ["acc", "mse"], higher=[True, False])
    assert ranking.ranks == ((2.0, 1.0), (2.0, 1.0)) and ranking.average == (2.0, 1.0)
    assert rank_methods(scores, ["a", "b"], ["acc", "mse"]).ranks[1] == (1.0, 2.0)  # read as higher-is-better
    points = [(1.0, 0.50), (2.0, 0.30), (3.0, 0.40), (4.0, 0.10)]  # (cost, MSE)
    assert pareto_front(points, higher=False) == [(1.0, 0.50), (2.0, 0.30), (4.0, 0.10)]
    assert pareto_front(points) == [(1.0, 0.50)]


def test_a_lower_mse_is_called_better(tmp_path):
    rng = np.random.default_rng(0)
    refs = rng.uniform(0, 5, 300)

    def run(method, seed, noise):
        folder = RunFolder(tmp_path / f"{method}{seed}")
        folder.path.mkdir()
        preds = refs + rng.normal(scale=noise, size=len(refs))
        folder.predictions.write_text("".join(json.dumps({"index": i, "reference": float(r), "pred": float(p)}) + "\n"
                                              for i, (r, p) in enumerate(zip(refs, preds))))
        task = {"name": "t", "type": "regression", "metric": "mse", "data": {"source": "x.jsonl"}}
        return RunResult.load({"seed": seed, "model": "m", "task": "t", "method": method, "task_type": "regression",
                               "folder": str(folder.path), "config": {"task": task},
                               "training": {"validation_metric": "mse"},
                               "test": {"metrics": regression_metrics(list(preds), list(refs))}})

    full = Cell("m", "t", "full", "full", [run("full", s, 1.0) for s in (1, 2, 3)])
    lora = Cell("m", "t", "lora", "lora", [run("lora", s, 0.5) for s in (1, 2, 3)])
    found, skipped = compare([full, lora], resamples=1000)
    assert not skipped
    (d,) = decide(found)
    assert d.result.difference < 0 and not d.result.higher_is_better  # MSE fell by about 0.75
    assert d.verdict == "better"
