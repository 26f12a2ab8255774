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
from .statistics import CONFIDENCE, Comparison, adjust, confusion_metric, seed_aware_test


class _Scores:
    """What the comparison needs from a task: the validation metric of a resample, from stored predictions.
    A mean of per-example scores (accuracy, span QA's F1 / EM: ``Metric.mean_of_examples``) is handed over as the
    per-example scores, whose variances are computed exactly; a confusion-matrix metric (macro-F1, MCC) is
    recomputed from resampled confusion matrices; anything else by the task's own ``compute_metrics``."""

    def __init__(self, run: RunResult):
        self.task = registry.get("task", run.task_type)(TaskSpec.model_validate(run.config["task"]))
        self.metric = run.training.validation_metric
        self.declared = self.task.metric_spec(self.metric)  # how its task computes it
        self.calibration = run.calibration
        self.prep = _StoredPrep(run)
        self.per_example = getattr(self.task, "example_scores", None) if self.declared.per_example else None
        self.n_labels = max(len(self.prep.labels), 1)
        self.confusion = self.declared.confusion and not self.per_example
        self.mean_metric = False  # set by runs(): every run's scores are per-example values

    def runs(self, cell: Cell) -> tuple[list[tuple[list, list]], list | None]:
        """Each run's (predictions, references) in test order, and the test examples' cluster ids (None where
        the predictions carry none: every example its own cluster)."""
        out, clusters, means = [], None, []
        for r in cell.runs:
            rows = RunFolder(r.folder).read_predictions("test")
            refs = [x["reference"] for x in rows]
            if clusters is None and rows and all("cluster" in x for x in rows):
                clusters = [x["cluster"] for x in rows]
            if self.confusion and all(isinstance(x.get("pred"), int) for x in rows):
                preds, gold = np.array([x["pred"] for x in rows]), np.array(refs)
                if self.metric == "accuracy":
                    right = (preds == gold).astype(float)
                    out.append((right, right))
                    means.append(True)
                else:
                    out.append((preds, gold))
                    means.append(False)
            elif self.per_example:  # a mean of per-example scores: the scores themselves
                scores = np.array(self.per_example(rows, refs)[self.metric], dtype=float)
                out.append((scores, scores))
                means.append(True)
            else:
                out.append((rows, refs))
                means.append(False)
        self.mean_metric = all(means)
        return out, clusters

    def __call__(self, predictions, references) -> float:
        if isinstance(predictions, np.ndarray) and predictions.dtype.kind == "f":
            return float(predictions.mean())
        if isinstance(predictions, np.ndarray):
            return confusion_metric(predictions, references, self.metric, self.n_labels)
        return self.task.compute_metrics(self.prep, predictions, references, self.calibration)[self.metric]


class _StoredPrep:
    """The parts of a task's Prepared that its metrics read, rebuilt from a stored result."""

    def __init__(self, run: RunResult):
        self.labels = tuple(run.labels)
        self.extra = {"scheme": run.data.get("scheme", "IOB2")}


def resamples_for(requested: int) -> int:
    """Example resamples for a metric that is no mean of per-example scores: they estimate two variances (the
    p-value itself comes from the pivot, with no resampling floor), so the grid's ``report.resamples`` serves,
    at least 1,000, which puts each variance within ~4.5% (sqrt(2 / B))."""
    return max(requested, 1000)


def compare(cells: list[Cell], baseline: str = "full", resamples: int = 1000, margin: float | None = 0.02,
            ) -> tuple[list[tuple[Cell, Comparison]], list[tuple[Cell, str]]]:
    """Each cell against the baseline cell (by method label) of the same model and task, where both have
    stored per-example test predictions over the same test data (same content hash): the seed-aware test
    (``statistics.seed_aware_test``), the examples-only interval beside it, test examples resampled by cluster
    where the predictions carry cluster ids. ``margin`` is on the 0-1 scale (scaled to metrics reported in
    percent). Returns the comparisons and the cells that could not be compared, with why (the report lists
    them)."""
    base = next((c for c in cells if c.method_name == baseline or c.label == baseline), None)
    if base is None or base.first.config is None:
        return [], []
    out, skipped = [], []
    try:
        scores = _Scores(base.first)
        base_runs, clusters = scores.runs(base)
        base_mean = scores.mean_metric
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return [], [(c, f"the baseline's predictions could not be read ({first_line(exc, 100)})")
                    for c in cells if c is not base]
    declared = scores.declared
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
            runs, _ = scores.runs(cell)
            result = seed_aware_test(scores, runs, base_runs, scores.metric, mean_metric=base_mean and scores.mean_metric,
                                     clusters=clusters, resamples=resamples,
                                     margin=None if margin is None else margin * declared.scale,
                                     method_seeds=cell.seeds, baseline_seeds=base.seeds, bounds=declared.range)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            skipped.append((cell, first_line(exc, 120)))
            continue
        out.append((cell, replace(result, scale=declared.scale, higher_is_better=declared.higher_is_better)))
    return out, skipped


@dataclass(frozen=True)
class Decided:
    """A comparison with its corrected p-values and the verdict they give.

    ``verdict``: better | worse | equivalent | inconclusive. ``negligible``: better / worse and also shown to lie
    within the equivalence margin (a real but small difference). ``undecidable``: equivalence cannot be shown
    with this test set at the correction's first step (``equivalence_floor`` >= alpha / m): more seeds cannot
    help, only more test examples or a wider margin. A comparison that is not ``seed_aware`` (a side with fewer
    than three seeds) is about those trained models, not about the method."""

    cell: Cell
    result: Comparison
    p_adjusted: float
    p_equivalence_adjusted: float | None
    verdict: str
    negligible: bool = False
    undecidable: bool = False
    tuning: tuple[str, ...] = ()  # diagnostics of either side (report/diagnostics.py): not decided, tuning

    @property
    def decided(self) -> bool:
        """A verdict about the methods: no tuning diagnostic on either side."""
        return not self.tuning

    @property
    def scale(self) -> float:
        return self.result.scale

    @property
    def words(self) -> str:
        """The verdict as the report prints it."""
        r, k = self.result, points(self.scale)
        word = self.verdict
        if self.negligible:
            word += f", but within ±{r.margin * k:.2f} (negligible)"
        if not r.seed_aware and word != "inconclusive":
            word += " (these trained models only: seed variance not measured)"
        if self.tuning:
            word += " — not decided, tuning: " + "; ".join(self.tuning)
        return word


def decide(found: list[tuple[Cell, Comparison]], correction: str = "holm", alpha: float = 0.05) -> list[Decided]:
    """The verdicts of a family of comparisons (every comparison in a report): "better" / "worse" where the
    corrected two-sided p-value is below ``alpha`` (and "negligible" beside it where the corrected TOST p-value
    is too: the difference is shown to lie within ±margin); else "equivalent" where the corrected TOST p-value
    is below ``alpha``; else "inconclusive" -- never "comparable" for a mere failure to find a difference."""
    p_adj = adjust([r.p for _, r in found], correction)
    with_margin = [i for i, (_, r) in enumerate(found) if r.p_equivalence is not None]
    eq_adj = dict(zip(with_margin, adjust([found[i][1].p_equivalence for i in with_margin], correction)))
    first_step = alpha / max(len(with_margin), 1) if correction != "none" else alpha
    out = []
    for i, (cell, r) in enumerate(found):
        pe = eq_adj.get(i)
        gain = r.difference if r.higher_is_better else -r.difference  # lower-is-better metrics: a drop is better
        shown_within = pe is not None and pe < alpha
        word = (("better" if gain > 0 else "worse") if p_adj[i] < alpha
                else "equivalent" if shown_within else "inconclusive")
        undecidable = r.equivalence_floor is not None and r.equivalence_floor >= first_step and not shown_within
        out.append(Decided(cell, r, p_adj[i], pe, word, word in ("better", "worse") and shown_within, undecidable))
    return out


def points(scale: float) -> float:
    """The factor that shows a difference in points: x100 for metrics on a 0-1 scale (``scale`` 1), x1 for
    metrics reported in percent (``scale`` 100)."""
    return 100.0 / scale


def verdict(d: Decided, base_label: str, correction: str = "holm") -> str:
    """e.g. "lora vs full: -1.20 macro_f1 (x100), 95% CI [-4.00, +1.60] over seeds and examples; p = 0.31,
    holm 0.93; within ±2.00: p = 0.41, holm 0.82 -> inconclusive (3 paired seeds x 40 examples; examples
    only: [-2.10, -0.30])"."""
    r = d.result
    k = points(r.scale)
    unit = f"{r.metric}" + (" (x100)" if k != 1 else "")
    name = "" if correction == "none" else f", {correction} {d.p_adjusted:.3g}"
    eq = ("" if r.p_equivalence is None else
          f"; within ±{r.margin * k:.2f}: p = {r.p_equivalence:.3g}"
          + ("" if correction == "none" else f", {correction} {d.p_equivalence_adjusted:.3g}"))
    seeds = (f"{r.seeds[0]} paired seed(s)" if r.paired_seeds else f"{r.seeds[0]} vs {r.seeds[1]} unpaired seeds")
    over = "over seeds and examples" if r.seed_aware else "over examples only"
    examples = f"{r.n_examples} examples" + (f" in {r.n_clusters} clusters" if r.n_clusters else "")
    how = f", {r.resamples} resamples" if r.resamples else ""
    pooled = ("" if r.pooled is None or not r.seed_aware else
              f"; examples only: [{r.pooled[0] * k:+.2f}, {r.pooled[1] * k:+.2f}]")
    clipped = "; interval clipped to the metric's range" if r.clipped else ""
    floor = ("" if not d.undecidable else
             f"; equivalence within ±{r.margin * k:.2f} cannot be shown with this test set (its examples alone "
             f"allow TOST p >= {r.equivalence_floor:.3g})")
    return (f"{d.cell.label} vs {base_label}: {r.difference * k:+.2f} {unit}, {int(CONFIDENCE * 100)}% CI "
            f"[{r.low * k:+.2f}, {r.high * k:+.2f}] {over}; p = {r.p:.3g}{name}{eq} -> {d.words} "
            f"({seeds} x {examples}{how}{pooled}{clipped}{floor})")
