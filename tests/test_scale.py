"""Past one run at a time: several runs at once on one machine (--jobs, --devices), disjoint shards of a grid
(--shard i/n, a Slurm array) and merging their stores."""
import json
import sqlite3
import subprocess
import sys

import yaml

from conftest import store_rows, toy_grid
from peftbench.cli import main
from peftbench.config import expand, load_grid
from peftbench.run.launch import slot_env
from peftbench.runner import run_grid, shard_of


def test_shards_cover_the_grid_exactly_once():
    grid = load_grid(data={"models": ["tiny:bert", "tiny:gpt2"], "methods": ["full", "lora", "dora"],
                           "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}], "seeds": [1, 2, 3]})
    runs = [r.run_id for r in expand(grid)]
    assert len(runs) == 18
    for n in (1, 2, 3, 4, 7, 18, 25):
        parts = [[r.run_id for r in shard_of(expand(grid), (i, n))] for i in range(n)]
        flat = [r for p in parts for r in p]
        assert sorted(flat) == sorted(runs) and len(set(flat)) == len(runs)  # every run once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
        assert parts == [[r.run_id for r in shard_of(expand(grid), (i, n))] for i in range(n)]  # deterministic


def test_shard_and_jobs_arguments_are_checked(tmp_path, capsys, toy):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, tmp_path / "r", models=["tiny:bert"], methods=["lora"])))
    for bad, words in ((["--shard", "2/2"], "--shard: '2/2'"), (["--shard", "x"], "--shard: 'x'"),
                       (["--jobs", "0"], "--jobs: must be at least 1"), (["--jobs", "2", "--in-process"], "--in-process")):
        assert main(["run", str(grid_file), "--quiet", "--no-report", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err, err


def test_two_shards_run_apart_then_merge_into_one_store(toy, tmp_path, capsys):
    data = toy_grid(toy, None, models=["tiny:bert"], methods=["lora", "full", "ia3"], epochs=1, threads=1)
    outs = []
    for i in range(2):
        data["output_dir"] = str(tmp_path / f"shard{i}")
        summary = run_grid(load_grid(data=data), in_process=True, show_progress=False, shard=(i, 2))
        assert summary.failed == [] and summary.total == len(summary.finished) == (2 if i == 0 else 1)
        outs.append(data["output_dir"])
    capsys.readouterr()
    merged = tmp_path / "merged"
    assert main(["merge", *outs, "--into", str(merged)]) == 0
    assert "3 run(s) added, 0 duplicate(s) skipped" in capsys.readouterr().out
    rows, curves = store_rows(merged)
    assert len(rows) == 3 and {r[1] for r in rows} == {"ok"} and all(curves[r[0]] == 1 for r in rows)
    assert len(list((merged / "runs").iterdir())) == 3
    assert main(["merge", *outs, "--into", str(merged)]) == 0  # again: nothing twice
    assert "0 run(s) added, 3 duplicate(s) skipped" in capsys.readouterr().out
    assert main(["report", str(merged)]) == 0
    data["output_dir"] = str(merged)  # the merged store is the whole grid: nothing left to run
    assert run_grid(load_grid(data=data), in_process=True, show_progress=False).skipped == 3
    assert main(["merge", str(tmp_path / "nothing"), "--into", str(merged)]) == 2


def test_parallel_slots_split_the_cores_or_take_a_gpu_each():
    from peftbench.measure import default_threads

    assert slot_env(0, 1, None) == {}
    assert slot_env(1, 2, None) == {"PEFTBENCH_THREADS": str(max(1, default_threads() // 2))}
    assert [slot_env(i, 3, ["0", "1", "2"]) for i in range(3)] == [{"CUDA_VISIBLE_DEVICES": d} for d in "012"]


def test_jobs_2_runs_two_at_once_into_one_store(toy, tmp_path):
    out = tmp_path / "results"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, out, models=["tiny:bert"], methods=["full", "lora", "dora", "ia3"],
                                                 epochs=2)))
    proc = subprocess.run([sys.executable, "-m", "peftbench.cli", "run", str(grid_file), "--jobs", "2", "--quiet",
                           "--no-report"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows, curves = store_rows(out)
    assert len(rows) == 4 and {r[1] for r in rows} == {"ok"}
    results = [json.loads(r[2]) for r in rows]
    from peftbench.measure import default_threads

    assert {r["timing"]["threads"] for r in results} == {max(1, default_threads() // 2)}  # a share of the cores each
    spans = sorted((r["provenance"]["started"], r["provenance"]["finished"]) for r in results)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # two runs were in flight at once
    db = sqlite3.connect(out / "peftbench.sqlite")
    assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    db.close()
