"""Tuning diagnostics: whether a cell's runs say more about their set-up than about their method.

Computed from the stored runs for every cell and printed beside every verdict it enters; a verdict with one is
counted as *not decided: tuning* (a budget's outcome is not a method's):

* ``edge``: a swept numeric setting's chosen value is its grid's smallest or largest (the best may lie beyond);
* ``still improving``: the best validation epoch is the last one allowed (the run reached its epoch cap
  without stopping early);
* ``never trained``: the training loss never fell clearly below its first epoch's (within 2%), or stayed within
  2% of ln(number of classes), chance for cross-entropy;
* ``collapsed``: a seed's test predictions are (nearly, >= 98%) one value -- the majority class, all-O tags, the
  empty answer -- named per seed;
* ``unequal budget``: the method and the baseline got different numbers of tuning trials, or optimizer steps over
  their whole sweep that differ by more than ``BUDGET_FACTOR``.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ..result import RunResult
from ..run.folder import RunFolder
from ..sweeps import point_of

NEVER_TRAINED = 0.02  # relative: the loss stayed within 2% of its first epoch's, or of ln(classes)
COLLAPSED = 0.98  # share of test predictions that are one value
BUDGET_FACTOR = 2.0  # optimizer steps over the sweep, method against baseline


@dataclass(frozen=True)
class Flag:
    kind: str  # edge | still improving | never trained | collapsed | unequal budget
    text: str
    seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class Tuning:
    """What a cell's sweep tried: every run of its (model, task, method) across settings, and the chosen one."""

    runs: tuple[RunResult, ...]
    chosen: dict

    @property
    def trials(self) -> int:
        return len({tuple(sorted(point_of(r).items())) for r in self.runs}) or 1

    @property
    def steps(self) -> int:
        return sum(r.training.optimizer_steps or 0 for r in self.runs)


def edge(tuning: Tuning | None) -> list[Flag]:
    if tuning is None or not tuning.chosen:
        return []
    out = []
    for key, value in tuning.chosen.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        values = sorted({point_of(r).get(key) for r in tuning.runs if isinstance(point_of(r).get(key), (int, float))})
        if len(values) < 2:
            continue
        if value in (values[0], values[-1]):
            side = "smallest" if value == values[0] else "largest"
            out.append(Flag("edge", f"{key} {value:g} is the {side} of its grid ({', '.join(f'{v:g}' for v in values)})"))
    return out


def still_improving(runs: list[RunResult]) -> list[Flag]:
    seeds = [r.seed for r in runs if r.training.best_epoch is not None and r.training.epochs_run
             and r.training.best_epoch == r.training.epochs_run and not r.training.stopped_early
             and not r.training.pruned_at]
    if not seeds:
        return []
    cap = max(r.training.epochs_run for r in runs if r.seed in seeds)
    return [Flag("still improving", f"best validation epoch is the last allowed ({cap} of {cap}) on seed(s) "
                                    f"{', '.join(map(str, seeds))}", tuple(seeds))]


def never_trained(runs: list[RunResult]) -> list[Flag]:
    seeds = []
    for r in runs:
        losses = [c.get("train_loss") for c in r.curves if c.get("train_loss") is not None]
        if not losses:
            continue
        flat = len(losses) >= 2 and min(losses[1:]) >= (1 - NEVER_TRAINED) * losses[0]
        k = len(r.labels or ())
        at_chance = k >= 2 and all(abs(x - math.log(k)) <= NEVER_TRAINED * math.log(k) for x in losses)
        if flat or at_chance:
            seeds.append(r.seed)
    if not seeds:
        return []
    return [Flag("never trained", f"training loss never fell clearly below its start on seed(s) "
                                  f"{', '.join(map(str, seeds))}", tuple(seeds))]


def _prediction_value(row: dict):
    if "pred" in row:
        return row["pred"]
    if "tags" in row:
        return "all-O" if all(t == "O" for t in row["tags"]) else "tagged"
    if "prediction" in row:
        return row["prediction"] or "(empty)"
    return None


def collapsed(runs: list[RunResult]) -> list[Flag]:
    out = []
    for r in runs:
        folder = RunFolder(r.folder) if r.folder else None
        if folder is None or not folder.predictions.exists():
            continue
        values = [str(v) for v in map(_prediction_value, folder.read_predictions("test")) if v is not None]
        if not values:
            continue
        value, count = Counter(values).most_common(1)[0]
        if value == "tagged" or count / len(values) < COLLAPSED:
            continue
        labels = r.labels or ()
        name = labels[int(value)] if value.isdigit() and int(value) < len(labels) else value
        out.append(Flag("collapsed", f"seed {r.seed} predicts {name} on {count / len(values):.0%} of the test set",
                        (r.seed,)))
    return out


def unequal_budget(method: Tuning | None, baseline: Tuning | None, method_runs: list[RunResult],
                   baseline_runs: list[RunResult]) -> list[Flag]:
    mt = method.trials if method else 1
    bt = baseline.trials if baseline else 1
    ms = method.steps if method else sum(r.training.optimizer_steps or 0 for r in method_runs)
    bs = baseline.steps if baseline else sum(r.training.optimizer_steps or 0 for r in baseline_runs)
    out = []
    if mt != bt:
        out.append(Flag("unequal budget", f"{mt} tuning trial(s) against the baseline's {bt}"))
    if ms and bs and max(ms, bs) / min(ms, bs) > BUDGET_FACTOR:
        out.append(Flag("unequal budget", f"{ms:,} optimizer steps over its tuning against the baseline's {bs:,}"))
    return out


def cell_flags(runs: list[RunResult], tuning: Tuning | None) -> list[Flag]:
    """A cell's own diagnostics (the budget needs the baseline: ``unequal_budget``)."""
    return [*edge(tuning), *still_improving(runs), *never_trained(runs), *collapsed(runs)]
