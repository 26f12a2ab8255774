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
                f"[{lo:+.{digits}f}, {hi:+.{digits}f}] ({word}; {self.n_examples} examples x {self.n_seeds} seed(s))")


def paired_bootstrap(score: Callable[[list, list], float], method_runs: list[tuple[list, list]],
                     baseline_runs: list[tuple[list, list]], metric: str, resamples: int = 1000,
                     seed: int = 0, confidence: float = CONFIDENCE) -> PairedResult:
    """Each run is (predictions, references) over the same test examples in the same order. Each resample
    draws examples with replacement; both sides are scored on the same draw, each averaged over its seeds,
    and the difference kept. The interval is the percentile interval of the differences."""
    n = len(method_runs[0][1])
    for preds, refs in method_runs + baseline_runs:
        if len(refs) != n or len(preds) != n:
            raise ValueError(f"paired bootstrap needs the same test examples on both sides ({len(refs)} vs {n})")

    def side(runs, idx):
        return statistics.fmean(score([p[i] for i in idx], [r[i] for i in idx]) for p, r in runs)

    everything = range(n)
    observed = side(method_runs, everything) - side(baseline_runs, everything)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        diffs[b] = side(method_runs, idx) - side(baseline_runs, idx)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return PairedResult(metric, observed, float(low), float(high), n, min(len(method_runs), len(baseline_runs)),
                        resamples)
