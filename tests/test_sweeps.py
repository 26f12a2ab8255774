"""Staged learning-rate sweeps (``sweep.seeds: k``): compare the rates on the first k seeds, run the other seeds
at the chosen rate only; the choice rule shared by the runner and the report."""
import json
import re

import pytest


from conftest import toy_grid
from peftbench.config import expand, load_grid
from peftbench.report import render, select_sweeps
from peftbench.runner import run_grid
from peftbench.store import Store
from peftbench.sweeps import choose, count_follow_ups, follow_ups


def _grid(staged_seeds=1, seeds=(1, 2, 3), methods=None):
    sweep = {"lr": [1e-4, 1e-3, 1e-2]}
    if staged_seeds:
        sweep["seeds"] = staged_seeds
    return load_grid(data={"models": ["tiny:bert", "tiny:gpt2"],
                           "methods": methods or [{"name": "lora", "sweep": sweep}, "full"],
                           "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}], "seeds": list(seeds)})


def _fake(run, val: float) -> dict:
    return {"seed": run.seed, "training": {"lr": run.method.lr, "best_validation": val}}


def test_choose_compares_rates_on_the_seeds_every_rate_ran():
    a = [{"seed": 1, "training": {"best_validation": 0.80}}]
    b = [{"seed": 1, "training": {"best_validation": 0.70}}, {"seed": 2, "training": {"best_validation": 0.99}},
         {"seed": 3, "training": {"best_validation": 0.99}}]
    best, score = choose({1e-3: a, 1e-2: b})
    assert best == 1e-3 and score == {1e-3: 0.80, 1e-2: 0.70}  # b's later seeds do not tip the comparison
    assert choose({1e-3: a, 1e-2: [dict(a[0])]})[0] == 1e-3  # a tie: the rate listed first
    # no seed in common (a hand-made store): every run counts
    assert choose({1e-3: a, 1e-2: b[1:]})[0] == 1e-2


def test_staged_sweep_expands_to_the_first_seeds_with_the_full_sweeps_run_ids():
    staged, full = _grid(1), _grid(None)
    first = expand(staged)
    # per model: lora 3 rates x seed 1, full x 3 seeds
    assert len(first) == 2 * (3 * 1 + 3) and count_follow_ups(staged) == 2 * 2
    assert len(expand(full)) == 2 * (3 * 3 + 3) and count_follow_ups(full) == 0
    assert {r.seed for r in first if r.method.name == "lora"} == {1}
    # how the sweep is staged does not change any run: ids (and cells) equal the full sweep's
    assert {r.run_id for r in first} <= {r.run_id for r in expand(full)}
    assert count_follow_ups(_grid(3)) == 0 and len(expand(_grid(3))) == len(expand(full))  # k >= seeds: no stage


def test_follow_ups_wait_for_the_comparison_then_run_the_chosen_rate():
    grid = _grid(1)
    runs, waiting = follow_ups(grid, lambda run_id: None)
    assert runs == [] and len(waiting) == 2 and "3 of 3 comparison run(s) not finished" in waiting[0]

    val = {1e-4: 0.5, 1e-3: 0.9, 1e-2: 0.7}
    done = {r.run_id: _fake(r, val[r.method.lr]) for r in expand(grid) if r.method.name == "lora"}
    runs, waiting = follow_ups(grid, done.get)
    assert waiting == [] and len(runs) == 4
    assert {(r.model.name, r.seed, r.method.lr) for r in runs} == {(m, s, 1e-3) for m in ("bert", "gpt2") for s in (2, 3)}
    full_ids = {r.run_id for r in expand(_grid(None))}
    assert {r.run_id for r in runs} <= full_ids  # the chosen rate's later seeds are the full sweep's runs

    # shards: the later runs are numbered whether chosen or not, so the shards stay disjoint and complete
    for n in (2, 3, 5):
        parts = [follow_ups(grid, done.get, (i, n))[0] for i in range(n)]
        ids = [r.run_id for p in parts for r in p]
        assert sorted(ids) == sorted(r.run_id for r in runs)
        assert sum(count_follow_ups(grid, (i, n)) for i in range(n)) == 4


def test_a_staged_sweep_runs_end_to_end_and_the_report_keeps_the_chosen_rate(toy, tmp_path, capsys):
    out = tmp_path / "out"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=[
        {"name": "lora", "sweep": {"lr": [1e-5, 5e-2], "seeds": 1}}], epochs=2)
    data["seeds"] = [1, 2, 3]
    grid = load_grid(data=data)
    lines = []
    summary = run_grid(grid, in_process=True, show_progress=False, echo=lines.append)
    assert summary.total == 4 and len(summary.finished) == 4 and not summary.failed and not summary.waiting
    assert any("staged sweeps: 2 run(s) at the chosen settings" in x for x in lines)

    store = Store(out)
    results = store.results(with_config=True)
    store.close()
    by_seed = {}
    for r in results:
        by_seed.setdefault(r.seed, []).append(r.training.lr)
    assert sorted(by_seed[1]) == [1e-5, 5e-2]
    first = {r.training.lr: r.training.best_validation for r in results if r.seed == 1}
    chosen = max(first, key=first.get)
    assert by_seed[2] == [chosen] and by_seed[3] == [chosen]

    kept, rows = select_sweeps(results)
    assert sorted(r.seed for r in kept) == [1, 2, 3] and {r.training.lr for r in kept} == {chosen}
    assert [row[5] for row in rows] == (["1", "3"] if chosen == 5e-2 else ["3", "1"])  # runs per rate
    render(out)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Sweeps" in report and "seeds every setting ran" in report
    assert "1, 2, 3" in report  # one cell over the three seeds

    again = run_grid(grid, in_process=True, show_progress=False, echo=lines.append)
    assert again.skipped == 4 and not again.finished  # a rerun trains nothing
    # the full sweep over the same store reuses the four finished runs and trains the two missing ones
    data["methods"][0]["sweep"].pop("seeds")
    whole = run_grid(load_grid(data=data), in_process=True, show_progress=False, echo=lines.append)
    assert whole.total == 6 and whole.skipped == 4 and len(whole.finished) == 2


def test_validate_and_run_count_the_later_seeds(toy, tmp_path, capsys):
    from peftbench.cli import main

    data = toy_grid(toy, tmp_path / "out", models=["tiny:bert"],
                    methods=[{"name": "lora", "sweep": {"lr": [1e-4, 1e-3], "seeds": 1}}])
    data["seeds"] = [1, 2, 3]
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 run(s)" in out and "seeds 2, 3 at the learning rate chosen on seed(s) 1" in out
    bad = dict(data, methods=[{"name": "lora", "sweep": {"lr": [1e-4], "seeds": 0}}])
    path.write_text(json.dumps(bad), encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    assert "methods[0].sweep.seeds" in capsys.readouterr().err


def test_a_sweep_over_options_and_training_settings_runs_every_combination():
    """Any run field: method options go to the options, training settings to the runs' train, lr to the method;
    every combination is one variant with its setting recorded; each value is checked as what it sets."""
    grid = load_grid(data={"models": ["tiny:bert"], "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}],
                           "methods": [{"name": "lora", "sweep": {"lr": [1e-3], "r": [4, 8], "batch_size": [8, 16]}},
                                       {"name": "full", "train": {"batch_size": 4}}], "seeds": [1]})
    runs = expand(grid)
    assert len(runs) == 5 and len({r.run_id for r in runs}) == 5
    swept = [(r.method.point, r.method.options["r"], r.train.batch_size, r.method.lr) for r in runs[:4]]
    assert swept == [({"lr": 1e-3, "r": r, "batch_size": b}, r, b, 1e-3) for r in (4, 8) for b in (8, 16)]
    assert runs[4].train.batch_size == 4 and grid.train.batch_size == 32  # a method's own training settings
    lr_only = load_grid(data={**_grid(None).model_dump(mode="json")})
    assert [r.run_id for r in expand(lr_only)] == [r.run_id for r in expand(_grid(None))]  # (points: not in ids)


def test_bad_sweep_fields_and_values_are_refused_in_one_line():
    import pytest

    from peftbench.config import ConfigError

    base = {"models": ["tiny:bert"], "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}], "seeds": [1]}
    for sweep, expected in (({"rr": [4]}, "methods[0].sweep.rr: not an option of method 'lora' or a training "
                                         "setting; allowed: lr, target_modules, peft_config, r, lora_alpha"),
                            ({"r": [4, 0]}, "methods[0].sweep.r: Input should be greater than or equal to 1"),
                            ({"batch_size": [8, 0]}, "methods[0].sweep.batch_size: Input should be greater than or "
                                                     "equal to 1 (got 0)"),
                            ({"scheduler": ["step"]}, "methods[0].sweep.scheduler: 'step' is not one of linear"),
                            ({"r": 4}, "methods[0].sweep.r: a sweep lists the values to try"),
                            ({"seeds": 1}, "methods[0].sweep: a sweep needs at least one field")):
        with pytest.raises(ConfigError) as info:
            load_grid(data={**base, "methods": [{"name": "lora", "sweep": sweep}]})
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match=r"methods\[0\].train.threads: not a training setting a method may set"):
        load_grid(data={**base, "methods": [{"name": "full", "train": {"threads": 1}}]})


def test_a_staged_sweep_over_the_rank_chooses_on_validation_and_reports_the_setting(toy, tmp_path):
    out = tmp_path / "out"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=[
        {"name": "lora", "sweep": {"r": [1, 8], "warmup_ratio": [0.0, 0.2], "seeds": 1}}], epochs=1, threads=1)
    data["seeds"] = [1, 2]
    summary = run_grid(load_grid(data=data), in_process=True, show_progress=False, echo=lambda *a: None)
    assert summary.total == 5 and len(summary.finished) == 5 and not summary.failed
    store = Store(out)
    results = store.results()
    store.close()
    first = {json.dumps(r.sweep_point, sort_keys=True): r.training.best_validation for r in results if r.seed == 1}
    assert len(first) == 4
    listed = [{"r": r, "warmup_ratio": w} for r in (1, 8) for w in (0.0, 0.2)]  # the order of the sweep
    top = max(first.values())
    best = next(p for p in listed if first[json.dumps(p, sort_keys=True)] == top)  # a tie: the first listed
    [later] = [r for r in results if r.seed == 2]
    assert later.sweep_point == best
    kept, rows = select_sweeps(results)
    assert {json.dumps(r.sweep_point, sort_keys=True) for r in kept} == {json.dumps(best, sort_keys=True)}
    chosen = [row for row in rows if row[-1] == "chosen"]
    assert len(rows) == 4 and len(chosen) == 1
    assert chosen[0][3] == ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items())


def test_a_tie_goes_to_the_setting_listed_first_whatever_order_the_store_returns_the_runs():
    """The persian-2025 twin hit this: two rates tied on seed 42; the runner's staged sweep ran seeds 43 / 44 at
    the first listed (3e-5) while the report, taking the rates in the store's order, kept 1e-4 with one seed."""
    sweep = {"lr": [3e-05, 1e-4], "seeds": 1}

    def run(lr, seed, val):
        return {"run_id": f"{lr}-{seed}", "model": "m", "task": "t", "method": "full", "seed": seed, "sweep": sweep,
                "training": {"lr": lr, "best_validation": val}}

    runs = [run(1e-4, 42, 0.88), run(3e-05, 42, 0.88), run(3e-05, 43, 0.89), run(3e-05, 44, 0.92)]
    for order in (runs, runs[::-1]):
        kept, rows = select_sweeps(order)
        assert sorted(r.seed for r in kept) == [42, 43, 44] and {r.training.lr for r in kept} == {3e-05}
        assert [row[-1] for row in rows if row[3] == "lr=3e-05"] == ["chosen"]


def test_a_log_spaced_rate_range_is_the_list_it_expands_to(toy, tmp_path):
    """sweep: {lr: {low, high, points}} gives log-spaced rates (ends included, 3 significant digits) and the very
    runs that listing them gives; a bad range is one line naming the field."""
    from peftbench.config import ConfigError, expand

    def grid(lr):
        return load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=[{"name": "lora", "sweep": {"lr": lr}}]))

    ranged = grid({"low": 1e-4, "high": 1e-2, "points": 5})
    assert ranged.methods[0].sweep.lr == [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]
    assert [r.run_id for r in expand(ranged)] == [r.run_id for r in expand(grid([1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]))]
    for bad, words in (({"low": 1e-2, "high": 1e-4, "points": 3}, "0 < low < high"),
                       ({"low": 1e-4, "high": 1e-2, "points": 1}, "points must be an integer >= 2"),
                       ({"low": 1e-4, "high": 1e-2}, "{low, high, points}")):
        with pytest.raises(ConfigError, match=r"methods\[0\]\.sweep\.lr: .*" + re.escape(words)):
            grid(bad)


def _extending(extend=2, lr=None, seeds=(1, 2, 3), staged_seeds=1):
    sweep = {"lr": lr, "extend": extend} if lr else {"lr": {"low": 1e-4, "high": 1e-2, "points": 3, "extend": extend}}
    if staged_seeds:
        sweep["seeds"] = staged_seeds
    return load_grid(data={"models": ["tiny:bert"], "methods": [{"name": "lora", "sweep": sweep}],
                           "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}], "seeds": list(seeds)})


def _drive(grid, score):
    """Run the extension to its end on fake results (validation ``score(lr)``): the rates it ran, in order, and
    the notes; the later seeds' rate."""
    from peftbench.sweeps import extension

    done = {r.run_id: _fake(r, score(r.method.lr)) for r in expand(grid)}
    order = []
    for _ in range(10):
        runs, notes = extension(grid, done.get)
        if not runs:
            break
        order += sorted({r.method.lr for r in runs})
        done.update({r.run_id: _fake(r, score(r.method.lr)) for r in runs})
    later, waiting = follow_ups(grid, done.get)
    return order, notes, {r.method.lr for r in later}, waiting, done


def test_an_extended_sweep_goes_beyond_an_edge_winner_until_the_best_lies_inside():
    import math

    grid = _extending(2)
    assert grid.methods[0].sweep.lr == [1e-4, 1e-3, 1e-2] and grid.methods[0].sweep.extend == 2
    # the best rate is 0.1 (a peak in log lr): 0.01 wins the listed grid at its edge; 0.1 is tried, wins, is at the
    # edge again; 1.0 is tried, loses: 0.1 is inside, chosen, and the later seeds run at it
    order, notes, later, waiting, done = _drive(grid, lambda lr: -abs(math.log10(lr) + 1))
    assert order == [0.1, 1.0] and notes == [] and later == {0.1} and waiting == []
    # a peak beyond the extensions: both spent, still at the edge, said so; the later seeds run at the best tried
    order, notes, later, _, _ = _drive(grid, lambda lr: lr)
    assert order == [0.1, 1.0] and later == {1.0} and "still at the edge after 2 extended rate(s)" in notes[0]
    # downward, by the grid's own ratio
    order, notes, later, _, _ = _drive(grid, lambda lr: -lr)
    assert order == [1e-5, 1e-6] and later == {1e-6} and notes
    # an interior winner: nothing added
    order, notes, later, _, _ = _drive(grid, lambda lr: -abs(math.log10(lr) + 3))
    assert order == [] and notes == [] and later == {1e-3}
    # a listed (not log-spaced) grid extends by the ratio of its two rates at that edge
    order, *_ = _drive(_extending(1, lr=[1e-4, 3e-4, 2e-3]), lambda lr: lr)
    assert order == [float(f"{2e-3 * 2e-3 / 3e-4:.3g}")]


def test_extended_rates_keep_run_ids_and_the_later_seeds_wait_for_them():
    grid = _extending(2)
    plain = _extending(0)
    assert {r.run_id for r in expand(grid)} == {r.run_id for r in expand(plain)}  # extend leaves the ids alone
    from peftbench.sweeps import extension

    done = {r.run_id: _fake(r, r.method.lr) for r in expand(grid)}
    beyond, _ = extension(grid, done.get)
    assert [(r.seed, r.method.lr, r.method.point) for r in beyond] == [(1, 0.1, {"lr": 0.1})]
    later, waiting = follow_ups(grid, done.get)
    assert later == [] and "wait for the chosen setting" in waiting[0]  # not chosen before the extension ends
    # an unstaged sweep extends on every seed; shards: shard 0 runs the extension, the others wait
    every = _extending(2, staged_seeds=None)
    done = {r.run_id: _fake(r, r.method.lr) for r in expand(every)}
    assert sorted(r.seed for r in extension(every, done.get)[0]) == [1, 2, 3]
    assert extension(every, done.get, (1, 2))[0] == [] and len(extension(every, done.get, (0, 2))[0]) == 3


@pytest.mark.parametrize("sweep, words", [
    ({"lr": [1e-3], "extend": 1}, "at least 2 values"),
    ({"lr": [1e-3, 1e-2], "r": [4, 8], "extend": 1}, "only field"),
    ({"lr": {"low": 1e-4, "high": 1e-2, "points": 3, "extend": 1}, "extend": 2}, "given twice"),
    ({"lr": [1e-3, 1e-2], "extend": -1}, "greater than or equal to 0"),
])
def test_a_bad_extend_is_one_line_naming_the_field(sweep, words):
    from peftbench.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_grid(data={"models": ["tiny:bert"], "methods": [{"name": "lora", "sweep": sweep}],
                        "tasks": [{"name": "t", "data": {"source": "x.jsonl"}}]})
    assert "methods[0].sweep.extend" in str(err.value) and words in str(err.value), str(err.value)


def test_an_extended_sweep_runs_end_to_end(toy, tmp_path):
    """The runner: the listed rates, then rates beyond the edge winner, then the later seeds at the chosen one;
    the report's edge diagnostic sees every rate tried."""
    out = tmp_path / "out"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=[
        {"name": "lora", "sweep": {"lr": {"low": 1e-7, "high": 1e-6, "points": 2, "extend": 1}, "seeds": 1}}],
        epochs=1)
    data["seeds"] = [1, 2]
    lines = []
    summary = run_grid(load_grid(data=data), in_process=True, show_progress=False, echo=lines.append)
    assert not summary.failed and not summary.waiting, lines
    store = Store(out)
    results = store.results(with_config=True)
    store.close()
    rates = sorted(r.training.lr for r in results if r.seed == 1)
    # two rates: the winner is always at an edge, so one more rate is run beyond it, one grid step (x10) away
    assert len(rates) == 3 and set(rates) - {1e-7, 1e-6} <= {1e-8, 1e-5}, rates
    assert any("extended sweeps: 1 run(s)" in x for x in lines)
    kept, _ = select_sweeps(results)
    assert {r.seed for r in kept} == {1, 2} and len({r.training.lr for r in kept}) == 1
