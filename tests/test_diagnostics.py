"""Tuning diagnostics beside the verdicts (issue 31): a rate at the edge of its grid, a run still improving at its
epoch cap, a run that never trained, a seed that collapsed onto one prediction, unequal tuning budgets -- and a
verdict whose cells carry one counted as not decided."""
import json

from conftest import toy_grid
from peftbench.config import load_grid
from peftbench.report import render
from peftbench.report.aggregate import Cell
from peftbench.report.aggregate import Tuning
from peftbench.report.diagnostics import cell_flags, collapsed, edge, never_trained, still_improving, unequal_budget
from peftbench.result import RunResult
from peftbench.run.folder import RunFolder
from peftbench.runner import run_grid


def _run(seed=1, losses=(0.69, 0.60, 0.50), best=3, run=3, stopped=False, lr=1e-3, steps=30, folder=None, labels=("a", "b")):
    return RunResult.load({"seed": seed, "model": "m", "task": "t", "method": "lora", "labels": list(labels),
                           "folder": folder, "sweep": {"lr": [1e-4, 1e-3]}, "sweep_point": {"lr": lr},
                           "curves": [{"epoch": i + 1, "train_loss": x, "val_loss": x, "val_metrics": {}}
                                      for i, x in enumerate(losses)],
                           "training": {"best_epoch": best, "epochs_run": run, "stopped_early": stopped,
                                        "optimizer_steps": steps, "lr": lr}})


def test_each_diagnostic_on_runs_built_by_hand(tmp_path):
    assert still_improving([_run(best=3, run=3)])[0].seeds == (1,)
    assert still_improving([_run(best=2, run=3, stopped=True)]) == []
    assert never_trained([_run(losses=(0.693, 0.692, 0.694))])[0].kind == "never trained"  # ln 2, flat
    assert never_trained([_run(losses=(1.10, 1.09))], ) != []  # within 2% of its start
    assert never_trained([_run(losses=(0.69, 0.40))]) == []
    tuning = Tuning((_run(lr=1e-4), _run(lr=1e-3), _run(lr=3e-4)), {"lr": 1e-3})
    assert "lr 0.001 is the largest of its grid (0.0001, 0.0003, 0.001)" in edge(tuning)[0].text
    assert edge(Tuning(tuning.runs, {"lr": 3e-4})) == []  # interior
    spent = Tuning((*tuning.runs, _run(lr=1e-2)), {"lr": 1e-2})  # sweep.extend tried a rate beyond: still the edge
    assert edge(spent)[0].text.endswith("(0.0001, 0.0003, 0.001, 0.01), still after 1 extended rate(s)")
    for i, (rows, flagged) in enumerate((([{"pred": 0}] * 99 + [{"pred": 1}], "a on 99%"),
                                          ([{"tags": ["O", "O"]}] * 50, "all-O on 100%"),
                                          ([{"prediction": ""}] * 20, "(empty) on 100%"),
                                          ([{"pred": 0}, {"pred": 1}] * 10, None))):
        folder = RunFolder(tmp_path / f"r{i}")
        folder.path.mkdir()
        folder.predictions.write_text("".join(json.dumps({"index": j, "reference": 0, **x}) + "\n"
                                              for j, x in enumerate(rows)))
        found = collapsed([_run(seed=7, folder=str(folder.path))])
        assert (found[0].text == f"seed 7 predicts {flagged} of the test set") if flagged else found == []
    more = Tuning((_run(steps=100), _run(steps=100), _run(lr=1e-4, steps=100)), {"lr": 1e-3})
    less = Tuning((_run(steps=30),), {"lr": 1e-3})
    texts = [f.text for f in unequal_budget(more, less, [], [])]
    assert "2 tuning trial(s) against the baseline's 1" in texts and any("300 optimizer steps" in t for t in texts)


def test_a_rate_at_the_edge_and_a_capped_run_make_the_verdict_not_decided(toy, tmp_path):
    """LoRA swept over two rates (whichever wins is an edge) and capped at 2 epochs on a task it is still
    learning: the report names both diagnostics beside the verdict and counts it as not decided: tuning."""
    out = tmp_path / "out"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=[
        "full", {"name": "lora", "sweep": {"lr": [1e-4, 3e-4], "seeds": 1}}], epochs=2, threads=1)
    data["seeds"] = [1, 2, 3]
    assert run_grid(load_grid(data=data), in_process=True, show_progress=False).failed == []
    text = render(out, echo=lambda *a: None)[0].read_text()
    line = next(x for x in text.splitlines() if x.startswith("lora vs full: "))
    assert "not decided, tuning: lora: lr " in line and "of its grid (0.0001, 0.0003)" in line
    assert "best validation epoch is the last allowed (2 of 2)" in line
    assert "1 not decided: tuning" in text and "### Tuning diagnostics" in text
    assert "0 better, 0 worse, 0 equivalent, 0 inconclusive" in text  # nothing counted as decided


def test_a_never_trained_and_a_collapsed_run_are_named_in_the_report_table(tmp_path):
    from peftbench.report.diagnostics import diagnostics_table

    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.predictions.write_text("".join(json.dumps({"index": j, "reference": j % 2, "pred": 0}) + "\n" for j in range(50)))
    stuck = _run(seed=44, losses=(0.693, 0.693, 0.692), best=1, run=3, stopped=True, folder=str(folder.path),
                 labels=("negative", "positive"))
    table = diagnostics_table("m__t", [Cell("m", "t", "lora", "lora", [stuck])], {})
    kinds = {row[1]: row[2] for row in table.rows}
    assert kinds["never trained"] == "training loss never fell clearly below its start on seed(s) 44"
    assert kinds["collapsed"] == "seed 44 predicts negative on 100% of the test set"
    assert cell_flags([_run(losses=(0.7, 0.3), best=1, run=2, stopped=True)], None) == []


def test_the_budget_table_gives_each_method_its_expected_best_of_n_trials():
    from peftbench.report.diagnostics import budget_table
    from peftbench.report.statistics import expected_max

    def runs(method, lrs_scores):
        return [RunResult.load({"seed": 1, "model": "m", "task": "t", "method": method, "task_type": "classification",
                                "sweep": {"lr": list(lrs_scores)}, "sweep_point": {"lr": lr},
                                "training": {"validation_metric": "accuracy", "best_validation": v},
                                "test": {"metrics": {"accuracy": v - 0.01}}}) for lr, v in lrs_scores.items()]
    lora = runs("lora", {1e-4: 0.60, 3e-4: 0.72, 1e-3: 0.70})
    full = runs("full", {2e-5: 0.74})
    tunings = {("m", "t", "lora"): Tuning(tuple(lora), {"lr": 3e-4}), ("m", "t", "full"): Tuning(tuple(full), {"lr": 2e-5})}
    cells = [Cell("m", "t", "full", "full", full), Cell("m", "t", "lora", "lora", [lora[1]])]
    table = budget_table("m__t", cells, tunings)
    assert table.head[:5] == ["Method", "Trials", "n = 1", "n = 2", "n = 3"]
    full_row, lora_row = table.rows
    assert full_row[1:5] == ["1", "0.7400", "–", "–"]
    assert lora_row[2:5] == [f"{expected_max([0.6, 0.72, 0.7], n):.4f}" for n in (1, 2, 3)]
    assert lora_row[4] == "0.7200" and lora_row[-1] == "0.7100"
    assert table.head[-2] == "Compute a trial (h)" and lora_row[-2] == "–"  # not measured here
    for r in lora:
        r.timing.train_cpu_seconds, r.timing.eval_cpu_seconds = 3000.0, 600.0
    from peftbench.report import plots
    from peftbench.report.diagnostics import budgets

    metric, sign, each = budgets(cells, tunings)
    assert metric == "accuracy" and sign == 1 and each[1].seconds_per_trial == 3600.0
    assert budget_table("m__t", cells, tunings).rows[1][-2] == "1.00"
    png, svg = plots.budget("m · t", metric, sign, each)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"tuning compute" in svg


def test_exclude_collapsed_gives_the_verdict_with_and_without_the_collapsed_seeds(tmp_path):
    """Three paired seeds, the method's seed 3 predicting one class throughout: with report.exclude_collapsed the
    comparison is given twice, the second without seed 3 on both sides, and the seed is named."""
    import numpy as np

    from peftbench.config import ReportSpec
    from peftbench.report.diagnostics import without_collapsed

    rng = np.random.default_rng(0)
    refs = rng.integers(0, 2, 200)

    def run(method, seed, right):
        folder = RunFolder(tmp_path / f"{method}{seed}")
        folder.path.mkdir()
        preds = [int(r) if rng.uniform() < right else 1 - int(r) for r in refs] if right is not None else [0] * 200
        folder.predictions.write_text("".join(json.dumps({"index": i, "reference": int(r), "pred": p}) + "\n"
                                              for i, (r, p) in enumerate(zip(refs, preds))))
        task = {"name": "t", "type": "classification", "data": {"source": "x.jsonl"}}
        return RunResult.load({"seed": seed, "model": "m", "task": "t", "method": method, "labels": ["a", "b"],
                               "task_type": "classification", "folder": str(folder.path),
                               "config": {"task": task}, "training": {"validation_metric": "accuracy"}})
    full = Cell("m", "t", "full", "full", [run("full", s, 0.8) for s in (1, 2, 3)])
    lora = Cell("m", "t", "lora", "lora", [run("lora", 1, 0.8), run("lora", 2, 0.8), run("lora", 3, None)])
    found = without_collapsed([full, lora], ReportSpec(exclude_collapsed=True), 1000)
    (cell, r), = found
    assert cell.label == "lora [without collapsed seed(s) 3]" and cell.seeds == [1, 2]
    assert r.seeds == (2, 2) and r.paired_seeds and not r.seed_aware  # two seeds left: about those models
    assert without_collapsed([full, full], ReportSpec(exclude_collapsed=True), 1000) == []


def test_unequal_tuning_compute_is_flagged_past_its_factor():
    """Tuning compute (CPU-seconds summed over the sweep; GPU-seconds = wall x processes on a GPU) is flagged when
    the method's and the baseline's differ by more than COMPUTE_FACTOR, not at a PEFT run's usual saving."""
    from peftbench.report.diagnostics import COMPUTE_FACTOR

    def timed(cpu, lr=1e-3, gpu=None):
        r = _run(lr=lr)
        r.timing.train_cpu_seconds, r.timing.eval_cpu_seconds = cpu - 10.0, 10.0
        if gpu is not None:
            r.memory.peak_memory_kind, r.timing.train_seconds, r.timing.eval_seconds, r.timing.processes = \
                "cuda_allocated", gpu, 0.0, 2
        return r

    assert timed(100.0).compute_seconds == 100.0 and timed(100.0, gpu=30.0).compute_seconds == 60.0
    base = Tuning((timed(3600.0), timed(3600.0, lr=1e-4)), {"lr": 1e-3})
    cheap = Tuning((timed(1000.0), timed(1000.0, lr=1e-4)), {"lr": 1e-3})  # 3.6x less: a PEFT run's saving
    far = Tuning((timed(400.0), timed(400.0, lr=1e-4)), {"lr": 1e-3})  # 9x less
    assert 3600 / 1000 < COMPUTE_FACTOR < 3600 / 400
    assert not [f for f in unequal_budget(cheap, base, [], []) if "compute" in f.text]
    flags = [f.text for f in unequal_budget(far, base, [], []) if "compute" in f.text]
    assert flags == ["0.22 CPU-hours of tuning compute against the baseline's 2.00"]
    assert Tuning((_run(),), {"lr": 1e-3}).compute is None  # not measured: no flag, no number
