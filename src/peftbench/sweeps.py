"""Sweeps: the setting a sweep chose, and the runs a staged sweep adds once it has chosen.

``sweep: {lr: [...], r: [...]}`` runs every combination (a *setting*) on every seed of the grid.
``sweep: {..., seeds: k}`` compares the settings on the grid's first ``k`` seeds only; once every one of those
runs has finished, the other seeds run at the chosen setting alone -- the usual protocol (tune on one seed,
then repeat), ``L*k + (S-k)`` runs instead of ``L*S``. Every run keeps the id it has in the full sweep, so
switching between the two reuses finished runs.

``sweep: {lr: {low, high, points, extend: e}}`` (or ``extend: e`` beside a listed ``lr``): where the best rate on
the comparing seeds is the smallest or largest tried, one more rate a grid step beyond it is run on those seeds,
and again, up to ``e`` rates, until the best lies inside (``extension``); the later seeds wait for it. A step is
the ratio of the two rates at that edge (a log-spaced range's own ratio). Extended rates keep the listed sweep's
run ids scheme: a rate's run id is the same whichever sitting added it.

The setting is chosen on validation only: by the mean best validation score over the seeds that every setting
has run (the report uses the same rule: later seeds of the chosen setting do not tip the comparison); a tie
goes to the setting listed first.
"""
from __future__ import annotations

import json
import statistics
from typing import Any, Callable, Hashable, Iterable

from .config import GridSpec, RunSpec, at_point, combos, run_spec, variants
from .result import RunResult
from .tasks.base import declared


def point_of(result: RunResult) -> dict[str, Any]:
    """The sweep setting a result ran (results written before settings were recorded: their learning rate)."""
    return result.sweep_point or {"lr": result.training.lr}


def point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, default=str)


def point_text(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def listed(sweep: dict | None) -> list[str]:
    """The ``point_key`` of every setting of a sweep (as a result records it), in the order the grid runs them
    (``config.variants``): what breaks a tie between settings."""
    import itertools

    sweep = sweep or {}
    axes = {**({"lr": sweep["lr"]} if sweep.get("lr") else {}),
            **{k: v for k, v in sweep.items() if k not in ("lr", "seeds") and isinstance(v, list)}}
    return [point_key(dict(zip(axes, combo))) for combo in itertools.product(*axes.values())] if axes else []


def in_listed_order(by_point: dict[str, list], sweep: dict | None) -> dict[str, list]:
    """``by_point`` reordered as the sweep lists its settings (any it does not list last, in their order)."""
    order = listed(sweep)
    rank = {k: i for i, k in enumerate(order)}
    return dict(sorted(by_point.items(), key=lambda kv: rank.get(kv[0], len(order))))


def choose(by_lr: dict[Hashable, list[RunResult | dict]]) -> tuple[Hashable, dict[Hashable, float]]:
    """(the chosen setting, each setting's score) from finished results grouped by setting (any key: a learning
    rate, a ``point_key``); the best score is the highest unless the task declares its validation metric
    lower-is-better."""
    by_lr = {lr: [RunResult.load(r) for r in runs] for lr, runs in by_lr.items()}
    common = set.intersection(*({r.seed for r in runs} for runs in by_lr.values()))
    score = {lr: statistics.fmean(r.training.best_validation for r in runs if not common or r.seed in common)
             for lr, runs in by_lr.items()}
    best = max if higher_is_better(next(iter(by_lr.values()))[0]) else min
    return best(score, key=score.get), score


def higher_is_better(result: RunResult) -> bool:
    """Whether a result's validation metric is better higher (its task's declaration; yes where unknown)."""
    if not result.task_type:  # a hand-made result
        return True
    return declared(result.task_type, result.training.validation_metric).higher_is_better


def next_rate(rates: list[float], upward: bool) -> float:
    """One grid step beyond the largest (``upward``) or smallest of ``rates``: the ratio of the two rates at that
    edge, 3 significant digits (as a range's rates)."""
    r = sorted(set(rates))
    value = r[-1] * r[-1] / r[-2] if upward else r[0] * r[0] / r[1]
    return float(f"{value:.3g}")


def comparing_seeds(grid: GridSpec, method) -> list[int]:
    """The seeds a sweep compares its settings on: the first ``seeds: k``, or every seed."""
    k = method.sweep.seeds if method.sweep else None
    return grid.seeds[:k] if k and k < len(grid.seeds) else list(grid.seeds)


def extended(grid: GridSpec, model, task, method, result_of: Callable[[str], RunResult | None]
             ) -> tuple[list, list[RunSpec], str | None, object]:
    """How far a sweep's extension has come: (the variants tried so far, listed then extended, in that order;
    the runs still to finish before it can go on or choose; a line for the report where it stopped at an edge
    with its extensions spent; the chosen variant, None while runs are pending). Without ``extend``: the listed
    variants."""
    tried = variants(method)
    seeds = comparing_seeds(grid, method)
    extend = method.sweep.extend if method.sweep else 0
    for _ in range(extend + 1):
        specs = [run_spec(model, v, task, grid.train, s) for v in tried for s in seeds]
        missing = [r for r in specs if result_of(r.run_id) is None]
        if missing:
            return tried, missing, None, None
        by_point: dict[str, list[RunResult]] = {}
        for r in specs:
            by_point.setdefault(point_key(r.method.point), []).append(result_of(r.run_id))
        best, _ = choose(by_point)
        rates = [v.lr for v in tried]
        chosen = next(v for v in tried if point_key(v.point) == best)
        lr = chosen.lr
        if not extend or min(rates) < lr < max(rates):
            return tried, [], None, chosen
        if len(tried) - len(variants(method)) >= extend:
            return tried, [], (f"{model.name} / {method.label} / {task.name}: lr {lr:g} is still at the edge after "
                               f"{extend} extended rate(s)"), chosen
        new = next_rate(rates, upward=lr == max(rates))
        tried = [*tried, at_point(method, {"lr": new})]
    return tried, [], None, None  # pragma: no cover - the loop returns


def extension(grid: GridSpec, result_of: Callable[[str], RunResult | None],
              shard: tuple[int, int] | None = None) -> tuple[list[RunSpec], list[str]]:
    """The extended rates' runs to do now (sweeps with ``extend``), and a line for each sweep that ended at an
    edge with its extensions spent. Sharded grids: shard 0 runs the extensions; the others' later seeds wait."""
    runs, notes = [], []
    for model, task, method in combos(grid):
        if not (method.sweep and method.sweep.extend):
            continue
        _, pending, note, _ = extended(grid, model, task, method, result_of)
        listed_ids = {run_spec(model, v, task, grid.train, s).run_id for v in variants(method)
                      for s in comparing_seeds(grid, method)}
        if not shard or shard[0] == 0:
            runs += [r for r in pending if r.run_id not in listed_ids]  # the listed ones: the grid's own runs
        notes += [note] if note else []
    return runs, notes


def staged(grid: GridSpec) -> Iterable[tuple]:
    """(model, task, method, the seeds that compare the rates, the seeds that follow) of each staged sweep."""
    for model, task, method in combos(grid):
        k = method.sweep.seeds if method.sweep and method.sweep.optuna is None else None  # (a search: search.py)
        if k and k < len(grid.seeds):
            yield model, task, method, grid.seeds[:k], grid.seeds[k:]


def follow_ups(grid: GridSpec, result_of: Callable[[str], RunResult | None],
               shard: tuple[int, int] | None = None) -> tuple[list[RunSpec], list[str]]:
    """The staged sweeps' later runs whose rate is chosen (``result_of``: a run id's finished result, or None),
    and one line for each sweep still waiting for its comparison runs. ``shard=(i, n)``: the later runs are
    numbered in the grid's stable order whether chosen or not, and shard i keeps numbers i, i+n, ..."""
    runs, waiting, number = [], [], 0
    for model, task, method, first, later in staged(grid):
        if shard:
            mine = [s for j, s in enumerate(later, number) if j % shard[1] == shard[0]]
            number, later = number + len(later), mine
            if not later:
                continue
        tried, pending, _, chosen = extended(grid, model, task, method, result_of)
        if pending:
            waiting.append(f"{model.name} / {method.label} / {task.name}: {len(pending)} of "
                           f"{len(tried) * len(first)} comparison run(s) not finished; seeds {later} wait for the "
                           "chosen setting")
            continue
        runs += [run_spec(model, chosen, task, grid.train, s) for s in later]
    return runs, waiting


def count_follow_ups(grid: GridSpec, shard: tuple[int, int] | None = None) -> int:
    """How many runs the staged sweeps add after choosing (for counts before any run)."""
    n = sum(len(later) for *_, later in staged(grid))
    return len(range(shard[0], n, shard[1])) if shard else n
