"""Statistics for the comparison.

* ``summarise``: mean, standard deviation and a t-interval over seeds;
* ``paired_bootstrap``: a method against a baseline over test examples, the seeds' models held fixed
  (examples-only; shown beside the seed-aware interval, never used for a verdict);
* ``hierarchical_bootstrap``: the seed-aware paired comparison -- seeds resampled, and the (shared) test
  examples -- with a two-sided p-value and the two one-sided p-values of an equivalence test (TOST) against a
  stated margin, all read off one bootstrap distribution (percentile-interval inversion);
* ``adjust``: Holm (default) or Bonferroni correction over every comparison a report makes;
* ``friedman`` / ``nemenyi_cd``: average ranks of methods over the tasks of a grid, the Friedman test and
  the Nemenyi critical difference (Demšar 2006).
"""
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
    """The examples-only comparison (the seeds' models held fixed): shown beside the seed-aware interval in the
    report, never turned into a verdict."""

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


def paired_bootstrap(score: Callable[[list, list], float], method_runs: list[tuple[list, list]],
                     baseline_runs: list[tuple[list, list]], metric: str, resamples: int = 1000,
                     seed: int = 0, confidence: float = CONFIDENCE, budget_seconds: float | None = 60,
                     min_resamples: int = 200) -> PairedResult:
    """Each run is (predictions, references) over the same test examples in the same order. Each resample
    draws examples with replacement; both sides are scored on the same draw, each averaged over its seeds,
    and the difference kept. The interval is the percentile interval of the differences. A slow metric (e.g.
    seqeval over a large test set) gets fewer resamples, not below ``min_resamples``, to stay near
    ``budget_seconds``; the count used is in the result."""
    n = _check_same_examples(method_runs, baseline_runs)

    def side(runs, idx):
        return statistics.fmean(score(_take(p, idx), _take(r, idx)) for p, r in runs)

    everything = np.arange(n)
    observed = side(method_runs, everything) - side(baseline_runs, everything)

    def draw(rng):
        idx = rng.integers(0, n, n)
        return side(method_runs, idx) - side(baseline_runs, idx)

    diffs, low, high = _bootstrap(draw, resamples, seed, confidence, budget_seconds, min_resamples)
    return PairedResult(metric, observed, low, high, n, min(len(method_runs), len(baseline_runs)), len(diffs))


def _bootstrap(draw: Callable, resamples: int, seed: int, confidence: float, budget_seconds: float | None,
               min_resamples: int) -> tuple[np.ndarray, float, float]:
    """``draw(rng)`` -> one resampled difference, up to ``resamples`` times: after 10 draws a slow statistic
    is held to ``budget_seconds`` (never below ``min_resamples``). The differences and their percentile
    interval."""
    import time

    rng = np.random.default_rng(seed)
    diffs = []
    start = time.perf_counter()
    for b in range(resamples):
        diffs.append(draw(rng))
        if b == 9 and budget_seconds:
            per = (time.perf_counter() - start) / 10
            resamples = max(min(resamples, int(budget_seconds / per)), min(min_resamples, resamples))
        if len(diffs) >= resamples:
            break
    diffs = np.array(diffs)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return diffs, float(low), float(high)


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


# ---------------------------------------------------------------- seed-aware paired comparison

@dataclass(frozen=True)
class Comparison:
    """A method against a baseline on the same test examples, seeds and examples both resampled.

    ``difference``: the mean over seeds of (method - baseline) on the whole test set; ``low`` / ``high``: the
    percentile interval of the two-stage bootstrap; ``p``: two-sided p-value of "no difference";
    ``p_equivalence``: the TOST p-value of "the difference lies outside ±margin" (None without a margin);
    ``per_seed``: (seed, method score, baseline score) on the whole test set where the seeds are paired;
    ``pooled``: the examples-only interval (models held fixed), for contrast."""

    metric: str
    difference: float
    low: float
    high: float
    p: float
    p_equivalence: float | None
    margin: float | None
    n_examples: int
    seeds: tuple[int, int]  # method's, baseline's
    paired_seeds: bool
    resamples: int
    per_seed: tuple[tuple[int | None, float, float], ...] = ()
    pooled: tuple[float, float] | None = None
    scale: float = 1.0  # the metric's own scale (its task's declaration): 100 for metrics reported in percent
    higher_is_better: bool = True


def _take(x, idx):
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def _check_same_examples(method_runs, baseline_runs) -> int:
    n = len(method_runs[0][1])
    for preds, refs in method_runs + baseline_runs:
        if len(refs) != n or len(preds) != n:
            raise ValueError(f"paired bootstrap needs the same test examples on both sides ({len(refs)} vs {n})")
    return n


def bootstrap_p_values(diffs: np.ndarray, margin: float | None = None) -> tuple[float, float | None]:
    """From a bootstrap distribution of a difference: the two-sided p-value of "difference = 0" and the TOST
    p-value of "|difference| >= margin", each the smallest level at which the matching percentile interval
    excludes the null ((1 + count) / (B + 1), so never 0)."""
    b = len(diffs)
    below, above = int(np.sum(diffs <= 0)), int(np.sum(diffs >= 0))
    p = min(1.0, 2 * (1 + min(below, above)) / (b + 1))
    if margin is None:
        return p, None
    lower = (1 + int(np.sum(diffs <= -margin))) / (b + 1)  # H0: difference <= -margin
    upper = (1 + int(np.sum(diffs >= margin))) / (b + 1)  # H0: difference >= +margin
    return p, min(1.0, max(lower, upper))


def hierarchical_bootstrap(score: Callable[[list, list], float], method_runs: list[tuple[list, list]],
                           baseline_runs: list[tuple[list, list]], metric: str, resamples: int = 1000,
                           seed: int = 0, confidence: float = CONFIDENCE, margin: float | None = None,
                           method_seeds: Sequence[int] | None = None, baseline_seeds: Sequence[int] | None = None,
                           budget_seconds: float | None = 60, min_resamples: int = 200) -> Comparison:
    """Two-stage paired bootstrap. Each run is (predictions, references) over the same test examples in the
    same order, one per seed. A resample draws S seed slots with replacement -- the same seeds on both sides
    where both ran the same seeds (a seed fixes data order and head initialisation for every method), else
    independently -- and one draw of the test examples with replacement. Every seed was scored on the same
    test set (seeds and examples are crossed, not nested), so the one example draw serves every slot on both
    sides: Owen's (2007) pigeonhole bootstrap for crossed factors, mildly conservative. Drawing examples anew
    for each seed would treat the test set as if each seed had its own, and divide its variance by the number
    of seeds. The statistic is the mean over slots of the method's score minus the baseline's. With one seed
    it is the examples-only bootstrap. Slow metrics get fewer resamples (not below ``min_resamples``), as in
    ``paired_bootstrap``; the count used is in the result."""
    n = _check_same_examples(method_runs, baseline_runs)
    ms = list(method_seeds) if method_seeds is not None else list(range(len(method_runs)))
    bs = list(baseline_seeds) if baseline_seeds is not None else list(range(len(baseline_runs)))
    paired = sorted(ms) == sorted(bs)
    if paired:
        base_by_seed = dict(zip(bs, baseline_runs))
        baseline_runs = [base_by_seed[s] for s in ms]  # slot i: the same seed on both sides
    m_full = [score(p, r) for p, r in method_runs]
    b_full = [score(p, r) for p, r in baseline_runs]
    observed = statistics.fmean(m_full) - statistics.fmean(b_full)
    per_seed = tuple(zip(ms, m_full, b_full)) if paired else ()
    sm, sb = len(method_runs), len(baseline_runs)

    def draw(rng):
        mi = rng.integers(0, sm, sm)
        bi = mi if paired else rng.integers(0, sb, sb)
        idx = rng.integers(0, n, n)  # one draw of the test set, shared by every seed slot on both sides
        return (statistics.fmean(score(_take(method_runs[i][0], idx), _take(method_runs[i][1], idx)) for i in mi)
                - statistics.fmean(score(_take(baseline_runs[i][0], idx), _take(baseline_runs[i][1], idx))
                                   for i in bi))

    diffs, low, high = _bootstrap(draw, resamples, seed, confidence, budget_seconds, min_resamples)
    p, p_eq = bootstrap_p_values(diffs, margin)
    return Comparison(metric, observed, low, high, p, p_eq, margin, n, (sm, sb), paired, len(diffs), per_seed)


# ---------------------------------------------------------------- multiple comparisons

CORRECTIONS = ("holm", "bonferroni", "none")


def adjust(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise error control over a report's comparisons: Holm's step-down (default), Bonferroni, or none.
    Adjusted p-values (capped at 1, Holm's made monotone), as statsmodels' ``multipletests`` returns them."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if method == "none" or m == 0:
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0).tolist()
    if method != "holm":
        raise ValueError(f"correction '{method}' is not known; allowed: {', '.join(CORRECTIONS)}")
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out.tolist()


# ---------------------------------------------------------------- ranking across tasks

@dataclass(frozen=True)
class Ranking:
    """Methods ranked on each block (a model x task), 1 = best, ties averaged; the Friedman test over the
    blocks and the Nemenyi critical difference at ``alpha``."""

    methods: tuple[str, ...]
    blocks: tuple[str, ...]
    ranks: tuple[tuple[float, ...], ...]  # per block
    average: tuple[float, ...]  # per method
    chi2: float
    p: float
    cd: float
    alpha: float


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Per row, rank 1 for the highest score; ties get their average rank."""
    from scipy.stats import rankdata

    return np.vstack([rankdata(-row) for row in scores])


def friedman(scores: np.ndarray) -> tuple[float, float]:
    """Friedman's chi-square over blocks (rows) x treatments (columns), with the correction for ties that
    scipy's ``friedmanchisquare`` applies; p from chi-square with k - 1 degrees of freedom. Defined for k >= 2
    (scipy asks for 3)."""
    from scipy.stats import chi2

    scores = np.asarray(scores, dtype=float)
    n, k = scores.shape
    ranks = _ranks(scores)
    ties = sum(t * (t * t - 1) for row in ranks for t in np.unique(row, return_counts=True)[1] if t > 1)
    c = 1 - ties / (k * (k * k - 1) * n)
    if c == 0:  # every block a tie: no evidence of any difference
        return 0.0, 1.0
    stat = (12.0 / (k * n * (k + 1)) * float(np.sum(ranks.sum(0) ** 2)) - 3 * n * (k + 1)) / c
    return float(stat), float(chi2.sf(stat, k - 1))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks: q_alpha / sqrt(2) * sqrt(k (k + 1) / (6 n)), q_alpha the
    studentized range quantile with k groups and infinite degrees of freedom (Demšar 2006: 2.569 for k = 4)."""
    from scipy.stats import studentized_range

    q = float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))


def rank_methods(scores: np.ndarray, methods: Sequence[str], blocks: Sequence[str], alpha: float = 0.05) -> Ranking:
    scores = np.asarray(scores, dtype=float)
    ranks = _ranks(scores)
    stat, p = friedman(scores)
    return Ranking(tuple(methods), tuple(blocks), tuple(tuple(map(float, r)) for r in ranks),
                   tuple(map(float, ranks.mean(0))), stat, p, nemenyi_cd(len(methods), len(blocks), alpha), alpha)
