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
* ``unequal budget``: the method and the baseline got different numbers of tuning trials, optimizer steps over
  their whole sweep that differ by more than ``BUDGET_FACTOR`` (2), or tuning compute (GPU- or CPU-seconds summed
  over the sweep, ``RunResult.compute_seconds``) that differs by more than ``COMPUTE_FACTOR`` (4).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ..result import RunResult
from ..run.folder import RunFolder
from ..sweeps import point_of
from ..tasks.base import declared
from .aggregate import Cell, Tuning
from .compare import Decided, compare
from .formats import Table
from .statistics import expected_max, summarise

NEVER_TRAINED = 0.02  # relative: the loss stayed within 2% of its first epoch's, or of ln(classes)
COLLAPSED = 0.98  # share of test predictions that are one value
BUDGET_FACTOR = 2.0  # optimizer steps over the sweep, method against baseline
# tuning compute (GPU- / CPU-seconds over the sweep): wider, because a PEFT run costs less than a full one at the
# same trials and steps (CPU LoRA 0.4 of full's train time on the Persian twin) without being an unequal tuning
COMPUTE_FACTOR = 4.0


@dataclass(frozen=True)
class Flag:
    kind: str  # edge | still improving | never trained | collapsed | unequal budget
    text: str
    seeds: tuple[int, ...] = ()


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
            sweep = tuning.runs[0].sweep or {}
            listed = sweep.get("lr") or values if key == "lr" else values  # rates beyond them: sweep.extend's
            beyond = [v for v in values if not min(listed) <= v <= max(listed)]
            after = f", still after {len(beyond)} extended rate(s)" if beyond else ""
            out.append(Flag("edge", f"{key} {value:g} is the {side} of its grid "
                                    f"({', '.join(f'{v:g}' for v in values)}){after}"))
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
    mc, bc = ((t or Tuning(tuple(runs), {})).compute for t, runs in ((method, method_runs), (baseline, baseline_runs)))
    if mc and bc and max(mc, bc) / min(mc, bc) > COMPUTE_FACTOR:
        unit = "GPU" if any((r.memory.peak_memory_kind or "").startswith("cuda") for r in method_runs) else "CPU"
        out.append(Flag("unequal budget", f"{mc / 3600:,.2f} {unit}-hours of tuning compute against the baseline's "
                                          f"{bc / 3600:,.2f}"))
    return out


def cell_flags(runs: list[RunResult], tuning: Tuning | None) -> list[Flag]:
    """A cell's own diagnostics (the budget needs the baseline: ``unequal_budget``)."""
    return [*edge(tuning), *still_improving(runs), *never_trained(runs), *collapsed(runs)]


# ---------------------------------------------------------------- in the report

def diagnostics_table(name: str, cells: list[Cell], tunings: dict) -> Table | None:
    """Every cell's tuning diagnostics (report/diagnostics.py), where any has one."""
    rows = [[c.label, f.kind, f.text] for c in cells
            for f in cell_flags(c.runs, tunings.get((c.model, c.task, c.first.method)))]
    if not rows:
        return None
    return Table(f"diagnostics__{name}", "Tuning diagnostics", ["Method", "Diagnostic", "What the runs show"], rows,
                 caption="edge: the chosen value of a swept setting is its grid's smallest or largest; still "
                         "improving: the best validation epoch is the last allowed; never trained: the training loss "
                         "stayed within 2% of its start (or of ln(classes)); collapsed: a seed predicts one value "
                         "for at least 98% of the test set. A verdict whose cells carry one is counted as not "
                         "decided: tuning.")


def with_diagnostics(d: Decided, cells: list[Cell], baseline: str, tunings: dict) -> Decided:
    """The comparison with the tuning diagnostics of its method's cell and the baseline's (report/diagnostics)."""
    import dataclasses

    base = next(c for c in cells if c.method_name == baseline or c.label == baseline)
    if set(d.cell.seeds) < set(base.seeds):  # a comparison without some seeds (report.exclude_collapsed)
        base = dataclasses.replace(base, runs=[r for r in base.runs if r.seed in set(d.cell.seeds)])

    def tuning(c):
        return tunings.get((c.model, c.task, c.first.method))

    flags = [f"{d.cell.label}: {f.text}" for f in cell_flags(d.cell.runs, tuning(d.cell))]
    flags += [f"{base.label}: {f.text}" for f in cell_flags(base.runs, tuning(base))]
    flags += [f"{d.cell.label}: {f.text}" for f in unequal_budget(tuning(d.cell), tuning(base), d.cell.runs, base.runs)]
    return dataclasses.replace(d, tuning=tuple(flags))


def without_collapsed(cells: list[Cell], settings, resamples: int) -> list:
    """``report.exclude_collapsed``: each comparison again without the seeds where either side collapsed onto one
    prediction (report/diagnostics.collapsed), the seed dropped on both sides so that the pairing holds; labelled
    with the seeds left out. They join the report's family, so the correction covers them too."""
    import dataclasses

    base = next((c for c in cells if c.method_name == settings.baseline or c.label == settings.baseline), None)
    if base is None:
        return []
    base_bad = {s for f in collapsed(base.runs) for s in f.seeds}
    out = []
    for cell in cells:
        if cell is base:
            continue
        bad = base_bad | {s for f in collapsed(cell.runs) for s in f.seeds}
        if not bad:
            continue
        keep = lambda c: dataclasses.replace(c, runs=[r for r in c.runs if r.seed not in bad])  # noqa: E731
        trimmed, trimmed_base = keep(cell), keep(base)
        if not trimmed.runs or not trimmed_base.runs:
            continue
        trimmed.label = f"{cell.label} [without collapsed seed(s) {', '.join(map(str, sorted(bad)))}]"
        found, _ = compare([trimmed_base, trimmed], settings.baseline, resamples, settings.equivalence_margin)
        out += found
    return out


@dataclass(frozen=True)
class Budget:
    """A method's tuning trials as the budget-fair comparison reads them: each trial's score (the mean best
    validation over the seeds every setting ran, signed so that higher is better), its mean compute (GPU- or
    CPU-seconds a trial, None where not measured) and the chosen trial's test score."""

    label: str
    scores: tuple[float, ...]
    seconds_per_trial: float | None
    test: float | None

    def expected(self, sign: int) -> list[float]:
        """The expected best validation score of n = 1 .. trials trials (unsigned back to the metric's scale)."""
        return [sign * expected_max(self.scores, n) for n in range(1, len(self.scores) + 1)]


def budgets(cells: list[Cell], tunings: dict) -> tuple[str, int, list[Budget]]:
    """(validation metric, its sign, each method's ``Budget``) of one model x task."""
    metric = cells[0].first.training.validation_metric
    sign = 1 if declared(cells[0].first.task_type, metric).higher_is_better else -1
    out = []
    for c in cells:
        t = tunings.get((c.model, c.task, c.first.method))
        runs = list(t.runs) if t else list(c.runs)
        by_point: dict = {}
        for r in runs:
            by_point.setdefault(tuple(sorted((r.sweep_point or {}).items())), []).append(r)
        common = set.intersection(*({r.seed for r in rs} for rs in by_point.values()))
        scores = [summarise([r.training.best_validation for r in rs if r.seed in common]).mean
                  for rs in by_point.values()]
        cost = [r.compute_seconds for rs in by_point.values() for r in rs if r.seed in common]
        per_trial = (sum(cost) / len(by_point)) if cost and all(x is not None for x in cost) else None
        out.append(Budget(c.label, tuple(sign * x for x in scores if x is not None), per_trial,
                          summarise([r.test.metrics.get(metric) for r in c.runs]).mean))
    return metric, sign, out


def budget_table(name: str, cells: list[Cell], tunings: dict) -> Table | None:
    """Budget-fair comparison (Dodge et al. 2019; Tang et al. 2020's unbiased estimator): per method, the
    expected best validation score of n tuning trials, from the trials its sweep ran (a trial: one setting, its
    score the mean best validation over the seeds every setting ran), beside the chosen trial's test score.
    Where the methods ran different numbers of trials, compare them at the same n."""
    metric, sign, each = budgets(cells, tunings)
    if max(len(b.scores) for b in each) < 2:
        return None
    most = max(len(b.scores) for b in each)
    rows = []
    for b in each:
        best = b.expected(sign) if b.scores else []
        rows.append([b.label, str(len(b.scores)), *[_fmt(best[n - 1]) if n <= len(best) else "–" for n in range(1, most + 1)],
                     "–" if b.seconds_per_trial is None else f"{b.seconds_per_trial / 3600:.2f}", _fmt(b.test)])
    return Table(f"budget__{name}", f"Expected best validation {metric} of n tuning trials",
                 ["Method", "Trials", *[f"n = {n}" for n in range(1, most + 1)], "Compute a trial (h)",
                  f"Test {metric} (chosen)"], rows,
                 caption="The mean best over every n-subset of the trials that ran (Tang et al. 2020's unbiased "
                         "form of Dodge et al. 2019's expected maximum): a method that looks better only with more "
                         "trials than another had is ahead on budget, not on method. Compute: GPU- or CPU-hours a "
                         "trial, over the seeds every setting ran (the figure's second panel puts n trials at n "
                         "times it).")


def _fmt(x, digits=4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"
