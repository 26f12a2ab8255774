"""peftbench plan: a few profiled steps per (model, method, task) predict each run's memory and time; runs that
would not fit are marked with what would make them fit; predictions are checked against the real runs."""
import json

import yaml

from conftest import toy_grid
from peftbench.cli import main
from peftbench.config import load_grid
from peftbench.plan import plan
from peftbench.runner import run_grid
from peftbench.store import Store


def test_plan_predicts_every_run_and_marks_what_will_not_fit(toy, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))  # plan and runs share a cache of their own
    data = toy_grid(toy, tmp_path / "out", models=["tiny:bert"], methods=["full", "lora"], epochs=2, threads=1)
    data["seeds"] = [1, 2]
    result = plan(load_grid(data=data), steps=2, echo=lambda *a: None)
    assert result["runs"] == 4 and len(result["rows"]) == 2  # seeds share one profile
    for row in result["rows"]:
        assert row["runs"] == 2 and row["fits"] and row["steps_profiled"] == 2
        assert row["peak_memory_mb"] > 0 and row["step_seconds"] > 0
        assert row["grid_seconds"] == 2 * row["run_seconds"] > row["epochs"] * row["step_seconds"]
    full, lora = result["rows"]
    assert full["trainable"] > lora["trainable"] and full["best_copy_mb"] > lora["best_copy_mb"]
    # the prediction against the real runs (tiny models: memory within 15%; times are too short to compare)
    run_grid(load_grid(data=data), in_process=False, show_progress=False)
    measured = {r.method: r.memory.peak_memory_mb for r in Store(tmp_path / "out").results()}
    for row in result["rows"]:
        assert abs(row["peak_memory_mb"] - measured[row["method"]]) / measured[row["method"]] < 0.15, (row, measured)
    monkeypatch.setenv("PEFTBENCH_MEMORY_BUDGET_MB", "1")
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["plan", str(grid_file), "--steps", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["fits"] for r in out["rows"]] == [False, False]
    assert "train.batch_size=8 train.grad_accum=2" in out["rows"][0]["advice"]
    assert "train.gradient_checkpointing=true" in out["rows"][0]["advice"]
    assert main(["plan", str(grid_file), "--steps", "1"]) == 0
    text = capsys.readouterr().out
    assert "| tiny | full | toy | 2 |" not in text and "| bert | full | toy | 2 |" in text and "no (> 1 MB)" in text
