"""Paired comparisons of each method against a baseline (full fine-tuning by default) on the same test
examples: the seed-aware (two-stage) bootstrap, corrected for the number of comparisons, with an equivalence
test against a stated margin, and the verdict in words."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import registry
from ..errors import first_line
from ..config import TaskSpec
from ..run.folder import RunFolder
from ..result import RunResult
from .aggregate import Cell
from .statistics import CONFIDENCE, Comparison, adjust, confusion_metric, hierarchical_bootstrap, paired_bootstrap


class _Scores:
    """What the bootstrap needs from a task: the validation metric of a resample, from stored predictions.
    Three ways, fastest first: a confusion matrix (single-label metrics), the mean of per-example scores
    (tasks with ``example_scores``, e.g. span QA), else the task's own ``compute_metrics``."""

    def __init__(self, run: RunResult):
        self.task = registry.get("task", run.task_type)(TaskSpec.model_validate(run.config["task"]))
        self.metric = run.training.validation_metric
        self.declared = self.task.metric_spec(self.metric)  # how its task computes it
        self.calibration = run.calibration
        self.prep = _StoredPrep(run)
        self.per_example = getattr(self.task, "example_scores", None) if self.declared.per_example else None
        self.n_labels = max(len(self.prep.labels), 1)
        self.confusion = self.declared.confusion and not self.per_example

    def runs(self, cell: Cell) -> list[tuple[list, list]]:
        out = []
        for r in cell.runs:
            rows = RunFolder(r.folder).read_predictions("test")
            refs = [x["reference"] for x in rows]
            if self.confusion and all(isinstance(x.get("pred"), int) for x in rows):
                out.append((np.array([x["pred"] for x in rows]), np.array(refs)))
            elif self.per_example:  # a mean of per-example scores: resample the scores themselves
                scores = np.array(self.per_example(rows, refs)[self.metric])
                out.append((scores, scores))
            else:
                out.append((rows, refs))
        return out

    def __call__(self, predictions, references) -> float:
        if isinstance(predictions, np.ndarray) and self.per_example:
            return float(predictions.mean())
        if isinstance(predictions, np.ndarray):
            return confusion_metric(predictions, references, self.metric, self.n_labels)
        return self.task.compute_metrics(self.prep, predictions, references, self.calibration)[self.metric]


class _StoredPrep:
    """The parts of a task's Prepared that its metrics read, rebuilt from a stored result."""

    def __init__(self, run: RunResult):
        self.labels = tuple(run.labels)
        self.extra = {"scheme": run.data.get("scheme", "IOB2")}


def resamples_for(requested: int, comparisons: int, alpha: float, cap: int = 20000) -> int:
    """Resamples enough that the smallest p-value a bootstrap can give (2 / (B + 1)) is a tenth of the
    smallest threshold Holm or Bonferroni apply (alpha / m): with 30 comparisons 1,000 resamples could never
    reject anything. At least ``requested``, at most ``cap`` (slow metrics are held to their time budget)."""
    return max(requested, min(cap, math.ceil(20 * max(comparisons, 1) / alpha)))


def compare(cells: list[Cell], baseline: str = "full", resamples: int = 1000, margin: float | None = 0.02,
            ) -> tuple[list[tuple[Cell, Comparison]], list[tuple[Cell, str]]]:
    """Each cell against the baseline cell (by method label) of the same model and task, where both have
    stored per-example test predictions over the same test data (same content hash): the seed-aware
    (two-stage) bootstrap, with the examples-only interval beside it. ``margin`` is on the 0-1 scale (scaled
    to metrics reported in percent). Returns the comparisons and the cells that could not be compared, with
    why (the report lists them)."""
    base = next((c for c in cells if c.method_name == baseline or c.label == baseline), None)
    if base is None or base.first.config is None:
        return [], []
    out, skipped = [], []
    try:
        scores = _Scores(base.first)
        base_runs = scores.runs(base)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return [], [(c, f"the baseline's predictions could not be read ({first_line(exc, 100)})")
                    for c in cells if c is not base]
    scale = scores.declared.scale
    data = base.first.provenance.get("data_sha256", {}).get("test")
    for cell in cells:
        if cell is base:
            continue
        if cell.first.config is None:
            skipped.append((cell, "no stored config"))
            continue
        if data and cell.first.provenance.get("data_sha256", {}).get("test") != data:
            skipped.append((cell, "tested on other test data (content hash differs)"))
            continue
        try:
            runs = scores.runs(cell)
            result = hierarchical_bootstrap(scores, runs, base_runs, scores.metric, resamples=resamples,
                                            margin=None if margin is None else margin * scale,
                                            method_seeds=cell.seeds, baseline_seeds=base.seeds)
            pooled = paired_bootstrap(scores, runs, base_runs, scores.metric, resamples=min(result.resamples, 1000))
        except (ValueError, FileNotFoundError, KeyError) as exc:
            skipped.append((cell, first_line(exc, 120)))
            continue
        out.append((cell, replace(result, pooled=(pooled.low, pooled.high), scale=scale,
                                  higher_is_better=scores.declared.higher_is_better)))
    return out, skipped


@dataclass(frozen=True)
class Decided:
    """A comparison with its corrected p-values and the verdict they give."""

    cell: Cell
    result: Comparison
    p_adjusted: float
    p_equivalence_adjusted: float | None
    verdict: str  # better | worse | equivalent | inconclusive

    @property
    def scale(self) -> float:
        return self.result.scale


def decide(found: list[tuple[Cell, Comparison]], correction: str = "holm", alpha: float = 0.05) -> list[Decided]:
    """The verdicts of a family of comparisons (every comparison in a report): "better" / "worse" where the
    corrected two-sided p-value is below ``alpha``; else "equivalent" where the corrected TOST p-value is
    (the difference is shown to lie within ±margin); else "inconclusive" -- never "comparable" for a mere
    failure to find a difference."""
    p_adj = adjust([r.p for _, r in found], correction)
    with_margin = [i for i, (_, r) in enumerate(found) if r.p_equivalence is not None]
    eq_adj = dict(zip(with_margin, adjust([found[i][1].p_equivalence for i in with_margin], correction)))
    out = []
    for i, (cell, r) in enumerate(found):
        pe = eq_adj.get(i)
        gain = r.difference if r.higher_is_better else -r.difference  # lower-is-better metrics: a drop is better
        word = (("better" if gain > 0 else "worse") if p_adj[i] < alpha
                else "equivalent" if pe is not None and pe < alpha else "inconclusive")
        out.append(Decided(cell, r, p_adj[i], pe, word))
    return out


def points(scale: float) -> float:
    """The factor that shows a difference in points: x100 for metrics on a 0-1 scale (``scale`` 1), x1 for
    metrics reported in percent (``scale`` 100)."""
    return 100.0 / scale


def verdict(d: Decided, base_label: str, correction: str = "holm") -> str:
    """e.g. "lora vs full: -1.20 macro_f1 (x100), 95% CI [-4.00, +1.60] over seeds and examples; p = 0.31,
    holm 0.93; within ±2.00: p = 0.41, holm 0.82 -> inconclusive (3 paired seeds x 40 examples, 1000
    resamples; examples only: [-2.10, -0.30])"."""
    r = d.result
    k = points(r.scale)
    unit = f"{r.metric}" + (" (x100)" if k != 1 else "")
    name = "" if correction == "none" else f", {correction} {d.p_adjusted:.3g}"
    eq = ("" if r.p_equivalence is None else
          f"; within ±{r.margin * k:.2f}: p = {r.p_equivalence:.3g}"
          + ("" if correction == "none" else f", {correction} {d.p_equivalence_adjusted:.3g}"))
    seeds = (f"{r.seeds[0]} paired seed(s)" if r.paired_seeds else f"{r.seeds[0]} vs {r.seeds[1]} unpaired seeds")
    if r.seeds[0] == 1 and r.seeds[1] == 1:
        seeds = "1 seed: seed variance not measured"
    pooled = "" if r.pooled is None else f"; examples only: [{r.pooled[0] * k:+.2f}, {r.pooled[1] * k:+.2f}]"
    return (f"{d.cell.label} vs {base_label}: {r.difference * k:+.2f} {unit}, {int(CONFIDENCE * 100)}% CI "
            f"[{r.low * k:+.2f}, {r.high * k:+.2f}] over seeds and examples; p = {r.p:.3g}{name}{eq} -> {d.verdict} "
            f"({seeds} x {r.n_examples} examples, {r.resamples} resamples{pooled})")
