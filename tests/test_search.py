"""Optuna searches (``sweep: {optuna: {trials, space}}``): settings drawn by optuna's samplers from the trials
finished before them, the median pruner on the validation curve, the staged-seed rule, replay from the store."""
import json
import math

import pytest

optuna = pytest.importorskip("optuna")

from conftest import toy_grid  # noqa: E402
from peftbench.config import ConfigError, load_grid  # noqa: E402
from peftbench.report import render, select_sweeps  # noqa: E402
from peftbench.runner import run_grid  # noqa: E402
from peftbench.search import count, draw, replay, searches, should_prune, state  # noqa: E402
from peftbench.store import Store  # noqa: E402

SPACE = {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "r": [2, 4, 8], "lora_dropout": {"low": 0.0, "high": 0.3}}


def _grid(trials=6, seeds=(1, 2, 3), k=1, **optuna_opts):
    sweep = {"optuna": {"trials": trials, "space": SPACE, **optuna_opts}, **({"seeds": k} if k else {})}
    return load_grid(data={"models": ["tiny:bert"], "methods": [{"name": "lora", "sweep": sweep}, "full"],
                           "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}], "seeds": list(seeds)})


def _fake(run, score):
    """A finished run's result: validation ``score(point)`` in each of three epochs (rising to it)."""
    v = score(run.method.point)
    return {"run_id": run.run_id, "seed": run.seed, "task_type": "classification", "sweep_point": run.method.point,
            "sweep_trial": run.method.trial,
            "training": {"lr": run.method.lr, "best_validation": v, "validation_metric": "macro_f1"},
            "curves": [{"epoch": e, "val_metrics": {"macro_f1": v * e / 3}} for e in (1, 2, 3)]}


def _complete(grid, score, extra=lambda run: {}):
    """Run the searches against a fake store to the end, one batch at a time; the store's results by run id
    (``extra``: more fields of a run's fake result)."""
    store = {}
    while True:
        pending = state(grid, store.get).pending
        if not pending:
            return store
        for run in pending:
            store[run.run_id] = {**_fake(run, score), **extra(run)}


def test_a_draw_is_a_function_of_the_spec_and_the_trials_before_it():
    grid = _grid()
    (model, task, method, first, later), = searches(grid)
    spec = method.sweep.optuna
    assert (first, later) == ([1], [2, 3]) and count(grid) == 6 * 1 + 2
    a, b = draw(spec, [], 0), draw(spec, [], 0)
    assert a == b and list(a) == ["lr", "r", "lora_dropout"]  # the space's order
    assert 1e-4 <= a["lr"] <= 1e-1 and a["r"] in (2, 4, 8) and 0.0 <= a["lora_dropout"] <= 0.3
    assert draw(spec, [], 1) != a  # each trial its own sampler seed
    other = spec.model_copy(update={"seed": 7})
    assert draw(other, [], 0) != a


def test_the_search_replays_from_the_store_and_resumes_with_the_same_trials():
    grid = _grid(trials=8, startup=3)
    score = lambda p: 1.0 - abs(math.log10(p["lr"]) + 2) / 3  # best near lr = 1e-2
    whole = _complete(grid, score)
    (model, task, method, first, later), = searches(grid)
    done = replay(grid, model, task, method, first, later, whole.get)
    assert done.done and [t.number for t in done.trials] == list(range(8))
    assert len(whole) == 8 and {r["sweep_trial"] for r in whole.values()} == set(range(8))
    # a search killed after trial 4: the store keeps trials 0-4, the replay draws trial 5 as the whole search did
    kept = {rid: r for rid, r in whole.items() if r["sweep_trial"] <= 4}
    part = replay(grid, model, task, method, first, later, kept.get)
    assert not part.done and [t.number for t in part.trials] == list(range(6))
    assert part.trials[5].point == done.trials[5].point and part.pending == done.trials[5].runs
    # the choice: the best finished trial; the later seeds run at its setting with the listed sweep's identity
    chosen = done.chosen()
    assert chosen.value == max(t.value for t in done.trials)
    progress = state(grid, whole.get)
    later_runs = progress.later
    assert progress.pending == [] and progress.waiting == [] and [r.seed for r in later_runs] == [2, 3]
    assert sorted(progress.finished) == sorted(whole)
    assert all(r.method.point == chosen.point and r.method.prune is None for r in later_runs)


def test_tpe_starts_as_random_search_then_draws_near_the_best_trials():
    """The first ``startup`` draws are the random sampler's; after them TPE draws nearer the best rates than random
    search does on the same seeds (20 trials, a score that peaks at lr = 1e-2; both fully seeded)."""
    distance = {}
    for sampler in ("tpe", "random"):
        grid = _grid(trials=20, startup=5, sampler=sampler)
        whole = _complete(grid, lambda p: 1.0 - abs(math.log10(p["lr"]) + 2) / 3)
        (model, task, method, first, later), = searches(grid)
        points = [t.point for t in replay(grid, model, task, method, first, later, whole.get).trials]
        distance[sampler] = [abs(math.log10(p["lr"]) + 2) for p in points]
        distance[sampler + " points"] = points
    assert distance["tpe points"][:5] == distance["random points"][:5]
    assert distance["tpe points"][5:] != distance["random points"][5:]
    late = {k: sum(distance[k][-10:]) / 10 for k in ("tpe", "random")}
    assert late["tpe"] < 0.6 * late["random"], late


def test_parallel_trials_are_drawn_together_from_the_trials_before_their_batch():
    grid = _grid(trials=5, parallel=2)
    (model, task, method, first, later), = searches(grid)
    first_batch = replay(grid, model, task, method, first, later, {}.get)
    assert [t.number for t in first_batch.trials] == [0, 1] and len(first_batch.pending) == 2
    assert first_batch.trials[0].point != first_batch.trials[1].point
    whole = _complete(grid, lambda p: p["lora_dropout"])
    assert len({r["sweep_trial"] for r in whole.values()}) == 5


def _median_reference(curves, curve, after, startup, higher):
    """The median rule by hand: from epoch ``after`` on, once ``startup`` (and at least one) trials have finished,
    prune when the run's best score so far is worse than the median of the finished trials' scores at this
    epoch (no finished trial reached it: no pruning)."""
    import statistics

    epoch = max(curve)
    if not curves or len(curves) < startup or epoch < after:
        return False
    others = [c[epoch] for c in curves if epoch in c]
    if not others:
        return False
    m = statistics.median(others)
    best = max(curve.values()) if higher else min(curve.values())
    return best < m if higher else best > m


def test_the_median_pruner_agrees_with_optuna_and_the_rule_by_hand():
    import random

    rng = random.Random(0)
    # by hand: three finished trials at epoch 1 scored 0.5, 0.7, 0.9 (median 0.7)
    rule = {"pruner": "median", "after": 1, "startup": 3, "curves": [{1: 0.5}, {1: 0.7}, {1: 0.9}]}
    assert should_prune(rule, {1: 0.6}, higher=True) and not should_prune(rule, {1: 0.8}, higher=True)
    assert not should_prune(rule, {1: 0.6}, higher=False) and should_prune(rule, {1: 0.8}, higher=False)
    assert not should_prune({**rule, "after": 2}, {1: 0.6}, higher=True)  # too early
    assert not should_prune({**rule, "startup": 4}, {1: 0.6}, higher=True)  # too few finished trials
    assert not should_prune(None, {1: 0.0}, higher=True)
    # the run's best score so far counts: 0.8 at epoch 1, then 0.6 at epoch 2 against a median of 0.7 there
    two = {**rule, "curves": [{1: 0.5, 2: 0.6}, {1: 0.7, 2: 0.7}, {1: 0.9, 2: 0.95}]}
    assert not should_prune(two, {1: 0.8, 2: 0.6}, higher=True) and should_prune(two, {1: 0.5, 2: 0.6}, higher=True)
    for _ in range(200):
        epochs = rng.randint(1, 4)
        curves = [{e: rng.random() for e in range(1, rng.randint(1, 5) + 1)} for _ in range(rng.randint(0, 6))]
        curve = {e: rng.random() for e in range(1, epochs + 1)}
        after, startup, higher = rng.randint(0, 3), rng.randint(0, 4), rng.random() < 0.5
        rule = {"pruner": "median", "after": after, "startup": startup, "curves": curves}
        got = should_prune(rule, curve, higher)
        assert got == _median_reference(curves, curve, after, startup, higher), (curves, curve, after, startup, higher)


def test_optuna_spec_errors_name_the_field_in_one_line():
    base = {"models": ["tiny:bert"], "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}], "seeds": [1]}
    cases = (({"optuna": {"trials": 2, "space": {"lr": {"low": 1e-2, "high": 1e-4}}}},
              "methods[0].sweep.optuna.space.lr.high: must be above low"),
             ({"optuna": {"trials": 2, "space": {"lr": {"low": 0, "high": 1e-2, "log": True}}}},
              "methods[0].sweep.optuna.space.lr.low: a log range needs low > 0"),
             ({"optuna": {"trials": 0, "space": {"r": [4]}}}, "methods[0].sweep.optuna.trials"),
             ({"optuna": {"trials": 2, "space": {"rr": [4]}}}, "methods[0].sweep.rr: not an option of method 'lora'"),
             ({"optuna": {"trials": 2, "space": {"r": {"low": 0, "high": 8}}}}, "methods[0].sweep.r: Input should be "
                                                                               "greater than or equal to 1"),
             ({"optuna": {"trials": 2, "space": {"r": [4]}, "sampler": "cmaes"}},
              "methods[0].sweep.optuna.sampler: 'cmaes' is not one of tpe, random"),
             ({"lr": [1e-3], "optuna": {"trials": 2, "space": {"r": [4]}}},
              "methods[0].sweep.lr: an optuna search draws its settings from optuna.space"),
             ({"optuna": {"trials": 2, "space": {"batch_size": {"low": 0, "high": 8}}}},
              "methods[0].sweep.batch_size: Input should be greater than or equal to 1"))
    for sweep, expected in cases:
        with pytest.raises(ConfigError) as info:
            load_grid(data={**base, "methods": [{"name": "lora", "sweep": sweep}]})
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_an_optuna_search_runs_end_to_end_prunes_and_the_report_lists_the_trials(toy, tmp_path):
    out = tmp_path / "out"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=[
        {"name": "lora", "sweep": {"seeds": 1, "optuna": {
            "trials": 5, "startup": 2, "prune_startup": 1, "prune_after": 1, "seed": 2,
            "space": {"lr": [2e-2], "r": [8, 1]}}}}], epochs=3, threads=1)
    data["seeds"] = [1, 2]
    grid = load_grid(data=data)
    lines = []
    summary = run_grid(grid, in_process=True, show_progress=False, echo=lines.append)
    # five trials and the later seed; a trial that draws a setting already run reuses its run
    assert summary.total == 6 and len(summary.finished) + summary.skipped == 6
    assert not summary.failed and not summary.waiting
    store = Store(out)
    results = store.results()
    store.close()
    trials = sorted((r for r in results if r.seed == 1), key=lambda r: r.sweep_trial)
    assert len(trials) == len(summary.finished) - 1 and trials[0].sweep_trial == 0
    # the sampler's first two (random) draws: r 8 learns the toy task at this rate, r 1 does not (macro F1 stays at
    # a constant prediction's 0.333) and is pruned after epoch 1, below the first trial's score there
    assert trials[0].sweep_point == {"lr": 2e-2, "r": 8} and trials[1].sweep_point == {"lr": 2e-2, "r": 1}
    complete = [r for r in trials if r.training.pruned_at is None]
    pruned = [r for r in trials if r.training.pruned_at is not None]
    assert trials[1].training.pruned_at == 1 and trials[0].training.pruned_at is None
    for r in pruned:  # stopped after a validation score below the median of the finished trials' at that epoch
        assert r.training.epochs_run == r.training.pruned_at < 3
    [later] = [r for r in results if r.seed == 2]
    best = max(complete, key=lambda r: (r.training.best_validation, -r.sweep_trial))
    assert later.sweep_point == best.sweep_point and later.sweep_trial is None
    # the search replays from the store: the same trials, nothing to run
    again = run_grid(grid, in_process=True, show_progress=False, echo=lines.append)
    assert again.skipped == 6 and not again.finished and again.total == 6
    kept, rows = select_sweeps(results)
    assert {json.dumps(r.sweep_point, sort_keys=True) for r in kept} == {json.dumps(best.sweep_point, sort_keys=True)}
    assert [row[3].split(":")[0] for row in rows] == [f"trial {r.sweep_trial}" for r in trials]
    assert [row[-1] for row in rows].count("chosen") == 1
    assert sum(row[-1].startswith("pruned after epoch") for row in rows) == len(pruned)
    render(out)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Sweeps" in report and "trial 0: lr=" in report


def test_validate_counts_and_describes_the_search(toy, tmp_path, capsys):
    from peftbench.cli import main

    data = toy_grid(toy, tmp_path / "out", models=["tiny:bert"], methods=[
        "full", {"name": "lora", "sweep": {"seeds": 1, "optuna": {"trials": 4, "space": {"r": [4, 8]}}}}])
    data["seeds"] = [1, 2, 3]
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "9 run(s)" in out  # full x 3 seeds, 4 trials on seed 1, seeds 2 and 3 at the chosen setting
    assert "lora / toy: optuna search, 4 trial(s) (tpe, pruner median) over r on seed(s) 1; seeds 2, 3 at the " \
           "chosen setting" in out


def test_a_compute_budget_stops_the_search_when_the_finished_trials_have_used_it():
    """``optuna.compute_seconds``: no trial is drawn once the finished ones used the budget (CPU-seconds here, each
    fake run costing its lr-dependent time); ``trials`` stays the most; the trials run are those of the
    unbudgeted search, so the run ids do not change; a spent budget ends the search and its later seeds run."""
    def cost(run):
        return 100.0 + 1000.0 * run.method.point["r"]  # r 2 / 4 / 8: 2,100 / 4,100 / 8,100 CPU-seconds

    def complete(grid):
        return _complete(grid, lambda p: p["lr"],
                         lambda run: {"timing": {"train_cpu_seconds": cost(run) - 100.0, "eval_cpu_seconds": 100.0}})

    free = complete(_grid(trials=8, startup=8))
    budget = 10_000.0
    capped_grid = _grid(trials=8, startup=8, compute_seconds=budget)
    capped = complete(capped_grid)
    by_trial = sorted(free.values(), key=lambda r: r["sweep_trial"])
    spent, n = 0.0, 0
    for r in by_trial:  # the budget by hand: trials until the cost so far reaches it
        n += 1
        spent += r["timing"]["train_cpu_seconds"] + r["timing"]["eval_cpu_seconds"]
        if spent >= budget:
            break
    assert 1 <= n < 8 and sorted(r["sweep_trial"] for r in capped.values()) == list(range(n))
    assert set(capped) <= set(free)  # the same trials, the same run ids
    progress = state(capped_grid, capped.get)
    assert progress.pending == [] and progress.waiting == [] and [r.seed for r in progress.later] == [2, 3]
    with pytest.raises(ConfigError, match=r"compute_seconds"):
        _grid(compute_seconds=0)
