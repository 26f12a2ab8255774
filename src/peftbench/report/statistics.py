"""Statistics for the comparison: mean, standard deviation and a t-interval over seeds, and the paired
bootstrap of a method against a baseline over test examples, pooled over seeds."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """A cell over seeds: mean, sample standard deviation, a 95% t-interval (None with one seed)."""

    n: int
    mean: float | None
    std: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def single(self) -> bool:
        return self.n == 1


def summarise(values: Sequence[float | None], confidence: float = CONFIDENCE) -> Summary:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return Summary(0, None)
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return Summary(1, mean)
    from scipy import stats

    std = statistics.stdev(vals)
    half = stats.t.ppf(0.5 + confidence / 2, len(vals) - 1) * std / math.sqrt(len(vals))
    return Summary(len(vals), mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedResult:
    metric: str
    difference: float  # method - baseline, on the metric's own scale
    low: float
    high: float
    n_examples: int
    n_seeds: int
    resamples: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def verdict(self, method: str, baseline: str, scale: float = 1.0, digits: int = 2) -> str:
        d, lo, hi = (x * scale for x in (self.difference, self.low, self.high))
        word = ("better" if d > 0 else "worse") if self.significant else "no clear difference"
        return (f"{method} vs {baseline}: {d:+.{digits}f} {self.metric}, {int(CONFIDENCE * 100)}% CI "
                f"[{lo:+.{digits}f}, {hi:+.{digits}f}] ({word}; {self.n_examples} examples x {self.n_seeds} seed(s), "
                f"{self.resamples} resamples)")


def paired_bootstrap(score: Callable[[list, list], float], method_runs: list[tuple[list, list]],
                     baseline_runs: list[tuple[list, list]], metric: str, resamples: int = 1000,
                     seed: int = 0, confidence: float = CONFIDENCE, budget_seconds: float | None = 60,
                     min_resamples: int = 200) -> PairedResult:
    """Each run is (predictions, references) over the same test examples in the same order. Each resample
    draws examples with replacement; both sides are scored on the same draw, each averaged over its seeds,
    and the difference kept. The interval is the percentile interval of the differences. A slow metric (e.g.
    seqeval over a large test set) gets fewer resamples, not below ``min_resamples``, to stay near
    ``budget_seconds``; the count used is in the result."""
    n = len(method_runs[0][1])
    for preds, refs in method_runs + baseline_runs:
        if len(refs) != n or len(preds) != n:
            raise ValueError(f"paired bootstrap needs the same test examples on both sides ({len(refs)} vs {n})")

    def take(x, idx):
        return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]

    def side(runs, idx):
        return statistics.fmean(score(take(p, idx), take(r, idx)) for p, r in runs)

    everything = np.arange(n)
    observed = side(method_runs, everything) - side(baseline_runs, everything)
    import time

    rng = np.random.default_rng(seed)
    diffs = []
    start = time.perf_counter()
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        diffs.append(side(method_runs, idx) - side(baseline_runs, idx))
        if b == 9 and budget_seconds:
            per = (time.perf_counter() - start) / 10
            resamples = max(min(resamples, int(budget_seconds / per)), min(min_resamples, resamples))
        if len(diffs) >= resamples:
            break
    diffs = np.array(diffs)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return PairedResult(metric, observed, float(low), float(high), n, min(len(method_runs), len(baseline_runs)),
                        len(diffs))


CONFUSION_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "mcc")


def confusion_metric(preds: np.ndarray, refs: np.ndarray, metric: str, n_labels: int) -> float:
    """accuracy / macro P, R, F1 (over the labels present in gold or predictions, zero division 0) / MCC from one
    confusion matrix, as scikit-learn computes them, for resampling thousands of times."""
    cm = np.bincount(refs * n_labels + preds, minlength=n_labels * n_labels).reshape(n_labels, n_labels).astype(float)
    if metric == "accuracy":
        return float(np.trace(cm) / cm.sum())
    if metric == "mcc":
        t, p, c, n = cm.sum(1), cm.sum(0), np.trace(cm), cm.sum()
        cov_ytyp, cov_ypyp, cov_ytyt = c * n - t @ p, n * n - p @ p, n * n - t @ t
        return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp)) if cov_ytyt * cov_ypyp else 0.0
    present = (cm.sum(0) + cm.sum(1)) > 0
    tp, fp, fn = np.diag(cm)[present], cm.sum(0)[present] - np.diag(cm)[present], cm.sum(1)[present] - np.diag(cm)[present]
    with np.errstate(divide="ignore", invalid="ignore"):
        per = {"macro_precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
               "macro_recall": np.where(tp + fn > 0, tp / (tp + fn), 0.0),
               "macro_f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)}[metric]
    return float(per.mean())
