"""Statistics for the comparison.

* ``summarise``: mean, standard deviation and a t-interval over seeds;
* ``seed_aware_test``: a method against a baseline on the same test examples, the seed-to-seed variance and
  the test examples' (resampled as clusters where they are not independent) both carried, with a two-sided
  p-value and the TOST p-value of equivalence within a stated margin, read off one generalized pivotal
  quantity; the examples-only interval (the seeds' models held fixed) beside it for contrast, and alone where a
  side has fewer than three seeds;
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
    """A cell over seeds: mean, sample standard deviation, a 95% t-interval (None with one seed), clipped to the
    quantity's range where it reaches past it (``clipped``: accuracy cannot exceed 1, a time cannot be negative)."""

    n: int
    mean: float | None
    std: float | None = None
    low: float | None = None
    high: float | None = None
    clipped: bool = False

    @property
    def single(self) -> bool:
        return self.n == 1


def summarise(values: Sequence[float | None], confidence: float = CONFIDENCE,
              bounds: tuple[float | None, float | None] = (None, None)) -> Summary:
    """``bounds``: the range the quantity can take (None: unbounded on that side); the t-interval is clipped
    to it and says so."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return Summary(0, None)
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return Summary(1, mean)
    from scipy import stats

    std = statistics.stdev(vals)
    half = stats.t.ppf(0.5 + confidence / 2, len(vals) - 1) * std / math.sqrt(len(vals))
    low, high = mean - half, mean + half
    lo_b, hi_b = bounds
    clipped = (lo_b is not None and low < lo_b) or (hi_b is not None and high > hi_b)
    if lo_b is not None:
        low = max(low, lo_b)
    if hi_b is not None:
        high = min(high, hi_b)
    return Summary(len(vals), mean, std, low, high, clipped)


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
    """A method against a baseline on the same test examples, the seeds' and the examples' variance both
    carried (``seed_aware``), or, with fewer than ``MIN_SEEDS`` seeds on a side, the examples' only: a verdict
    about those trained models, not about the method.

    ``difference``: the mean over seeds of (method - baseline) on the whole test set; ``se``: its estimated
    standard error; ``low`` / ``high``: the generalized confidence interval (clipped to what the metric's range
    allows, ``clipped``); ``p``: two-sided p-value of "no difference"; ``p_equivalence``:
    the TOST p-value of "the difference lies outside ±margin" (None without a margin); ``equivalence_floor``:
    the smallest TOST p-value this test set allows at all (a zero difference, no seed variance);
    ``seed_variance`` / ``example_variance``: the two parts of ``se``²; ``per_seed``: (seed, method score,
    baseline score) on the whole test set where the seeds are paired; ``pooled``: the examples-only interval
    (models held fixed), for contrast; ``resamples``: example resamples drawn (0: computed exactly, the metric
    being a mean of per-example scores)."""

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
    se: float = 0.0
    seed_aware: bool = True
    n_clusters: int | None = None  # where the test examples are resampled as clusters
    seed_variance: float = 0.0
    example_variance: float = 0.0
    equivalence_floor: float | None = None
    clipped: bool = False


MIN_SEEDS = 3  # below it on either side the seed-to-seed variance is not estimated: a verdict about those models


def _take(x, idx):
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def _check_same_examples(method_runs, baseline_runs) -> int:
    n = len(method_runs[0][1])
    for preds, refs in method_runs + baseline_runs:
        if len(refs) != n or len(preds) != n:
            raise ValueError(f"paired comparison needs the same test examples on both sides ({len(refs)} vs {n})")
    return n


def cluster_codes(clusters: Sequence | None, n: int) -> tuple[np.ndarray, int]:
    """Each test example's cluster as 0..C-1 (every example its own cluster without ``clusters``)."""
    if clusters is None:
        return np.arange(n), n
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} test examples")
    _, codes = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return codes, int(codes.max()) + 1 if n else 0


def mean_deviations(values: np.ndarray, codes: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per cluster, its contribution to the mean's deviation, (sum_c - mean * size_c) / n: the mean's bootstrap
    distribution over clusters is, to first order, sum_c (w_c - 1) u_c with multinomial weights w, whose
    variance is sum_c u_c^2 (the sum of u is 0). Exact for a mean of per-example scores; with one example a
    cluster, sum_c u_c^2 = var(values, ddof=0) / n."""
    values = np.asarray(values, dtype=float)
    sums = np.bincount(codes, values, n_clusters)
    sizes = np.bincount(codes, minlength=n_clusters)
    return (sums - values.mean() * sizes) / len(values)


def resampled_deviations(score: Callable, runs: list[tuple[list, list]], codes: np.ndarray, n_clusters: int,
                         resamples: int, seed: int, budget_seconds: float | None, min_resamples: int) -> np.ndarray:
    """For a metric that is no mean of per-example scores (macro-F1, entity F1, BLEU, MCC): every run scored on
    ``resamples`` draws of the test clusters with replacement (one draw shared by every run, as the runs share
    the test set), centred: a (draws x runs) matrix whose column sums of squares / (draws - 1) are each run's
    bootstrap variance and whose cross products are their covariances. After 10 draws a slow metric is held to
    ``budget_seconds`` (never below ``min_resamples``)."""
    import time

    members = None if n_clusters == len(codes) and np.array_equal(codes, np.arange(len(codes))) else \
        [np.flatnonzero(codes == c) for c in range(n_clusters)]
    rng = np.random.default_rng(seed)
    rows, start = [], time.perf_counter()
    for b in range(resamples):
        draw = rng.integers(0, n_clusters, n_clusters)
        idx = draw if members is None else np.concatenate([members[c] for c in draw])
        rows.append([score(_take(p, idx), _take(r, idx)) for p, r in runs])
        if b == 9 and budget_seconds:
            per = (time.perf_counter() - start) / 10
            resamples = max(min(resamples, int(budget_seconds / per)), min(min_resamples, resamples))
        if len(rows) >= resamples:
            break
    x = np.asarray(rows, dtype=float)
    return (x - x.mean(0)) / math.sqrt(max(len(x) - 1, 1))


class _Pivot:
    """The generalized pivotal quantity of the mean difference (Weerahandi 1993, as for the Behrens-Fisher
    problem): mu~ = observed - Z * sqrt(sum_j S_j^2 / (k_j W_j) + v_pure), with Z standard normal and
    W_j ~ chi2(k_j - 1) / (k_j - 1) independent -- each seed term's variance pivoted on its k_j - 1 degrees of
    freedom -- and the pure example term v_pure = v_ex - sum_j v_int_j / k_j (>= 0), which the examples measure
    with C - 1 degrees of freedom, taken as known. Its quantiles are the interval, its mass below 0 the p-value.
    Without seed terms (one or two seeds) it is the examples-only t(C - 1) distribution. The W_j are integrated
    on fixed quantile grids (deterministic). (Flooring each seed term at its interaction part v_int_j, which it
    cannot lie below in expectation, made the interval over-cover: 99% at 3 seeds where seeds disagree on a
    third of the examples.)"""

    GRID = 400  # one seed term; two (unpaired seeds) use GRID2 x GRID2
    GRID2 = 80

    def __init__(self, observed: float, v_ex: float, df_ex: float, terms: list[tuple[float, float, int]]):
        from scipy import stats

        self.observed, self.v_ex, self.df_ex, self.terms = observed, v_ex, df_ex, terms
        pure = max(v_ex - sum(v_int / k for _, v_int, k in terms), 0.0)
        self.seed_variance = max(sum((s2 - v_int) / k for s2, v_int, k in terms), 0.0)  # s_a^2 / k, for display
        if terms:
            self.se = math.sqrt(sum(s2 / k for s2, _, k in terms) + pure)
            size = self.GRID if len(terms) == 1 else self.GRID2
            grids = [stats.chi2.ppf((np.arange(size) + 0.5) / size, k - 1) / (k - 1) for _, _, k in terms]
            mesh = np.meshgrid(*grids, indexing="ij")
            var = pure + sum(s2 / (k * w) for (s2, _, k), w in zip(terms, mesh))
            self.sd = np.sqrt(var).ravel()
        else:
            self.se = math.sqrt(v_ex)
            self.sd = None

    def cdf(self, x: float) -> float:
        """P(mu~ <= x)."""
        from scipy import stats
        from scipy.special import ndtr

        if self.sd is None:
            if self.se == 0:
                return 1.0 if x >= self.observed else 0.0
            return float(stats.t.cdf((x - self.observed) / self.se, self.df_ex))
        if not np.any(self.sd > 0):
            return 1.0 if x >= self.observed else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(self.sd > 0, (x - self.observed) / self.sd, np.inf if x >= self.observed else -np.inf)
        return float(np.mean(ndtr(z)))

    def quantile(self, q: float) -> float:
        from scipy.optimize import brentq

        if self.se == 0:
            return self.observed
        span = 1.0
        while self.cdf(self.observed - span * self.se) > q or self.cdf(self.observed + span * self.se) < q:
            span *= 4
            if span > 1e8:
                break
        return float(brentq(lambda x: self.cdf(x) - q, self.observed - span * self.se,
                            self.observed + span * self.se, xtol=1e-10 * max(self.se, 1e-12)))


def seed_aware_test(score: Callable[[list, list], float], method_runs: list[tuple[list, list]],
                    baseline_runs: list[tuple[list, list]], metric: str, *, mean_metric: bool = False,
                    clusters: Sequence | None = None, margin: float | None = None,
                    method_seeds: Sequence[int] | None = None, baseline_seeds: Sequence[int] | None = None,
                    bounds: tuple[float | None, float | None] = (None, None), confidence: float = CONFIDENCE,
                    resamples: int = 1000, seed: int = 0, budget_seconds: float | None = 60,
                    min_resamples: int = 200) -> Comparison:
    """The seed-aware paired comparison: the mean over seeds of (method - baseline), with an interval and
    p-values that carry both sources a verdict about a *method* must survive -- another draw of seeds and
    another draw of test examples -- each with its own degrees of freedom.

    Seeds and examples are crossed (every seed's model scored on the one test set), so the difference of seed s
    on example i is d_si = mu + a_s + b_i + ab_si and Var(mean) = (s_a^2 + s_ab^2 / n) / k + s_b^2 / n. Its
    unbiased estimate is  S^2 / k + (v_ex - v_int / k),  where
      S^2   = the sample variance over seeds of the per-seed differences (k - 1 df), estimating s_a^2 + s_ab^2 / n;
      v_ex  = the variance of the seed-averaged difference over resampled test clusters, the models held fixed
              (what the examples-only interval uses), estimating s_b^2 / n + s_ab^2 / (k n);
      v_int = the examples' variance of each seed's deviation from the seed average, summed over seeds / (k - 1),
              estimating s_ab^2 / n (the seed x example interaction, which S^2 and v_ex would otherwise both count).
    For a mean of per-example scores (accuracy, QA F1) v_ex and v_int are computed exactly from per-cluster
    sums (without clusters: the two-way crossed ANOVA's mean squares); for other metrics from ``resamples``
    draws of the test clusters shared by every run. The interval and the p-values come from the generalized
    pivotal quantity of ``_Pivot``: S^2 pivoted on its k - 1 degrees of freedom, the example part (many more)
    taken as known. Chosen by simulation (tests/calibration.py, bench/verdict_calibration.py,
    docs/statistics.md): the percentile two-stage bootstrap it replaces (seed slots and examples resampled,
    Owen's pigeonhole scheme) covered 83-91% at 3 seeds where seeds vary and called null differences better /
    worse up to 16% of the time; a Satterthwaite t on the same variance is liberal at 3 seeds (1.57 x alpha at
    0.05, 5.4 x at the 0.005 Holm needs first over 10 comparisons); the pivot is never liberal in the exact
    normal computation (at either level) and at worst conservative (97.6% coverage at 3 seeds when seeds carry
    a fifth to a half of the variance).

    With fewer than ``MIN_SEEDS`` seeds on either side the seed-to-seed variance is not estimated: the test is
    the examples-only one (``seed_aware`` False) and its verdict is about those trained models only.
    ``clusters`` names each test example's cluster (aligned translations of one sentence, questions on one
    passage): the examples are resampled as clusters, with C - 1 degrees of freedom. Unpaired seeds (the two
    sides ran different seeds) take each side's seed variance on its own. ``bounds``: the metric's range on its
    own scale, which bounds the difference's interval (clipping recorded)."""
    n = _check_same_examples(method_runs, baseline_runs)
    ms = list(method_seeds) if method_seeds is not None else list(range(len(method_runs)))
    bs = list(baseline_seeds) if baseline_seeds is not None else list(range(len(baseline_runs)))
    paired = sorted(ms) == sorted(bs)
    if paired:
        base_by_seed = dict(zip(bs, baseline_runs))
        baseline_runs = [base_by_seed[s] for s in ms]  # column i: the same seed on both sides
    codes, n_clusters = cluster_codes(clusters, n)
    km, kb = len(method_runs), len(baseline_runs)
    if mean_metric:
        m_full = [float(np.mean(p)) for p, _ in method_runs]
        b_full = [float(np.mean(p)) for p, _ in baseline_runs]
        dev = np.column_stack([mean_deviations(p, codes, n_clusters) for p, _ in method_runs + baseline_runs])
        drawn = 0
    else:
        m_full = [score(p, r) for p, r in method_runs]
        b_full = [score(p, r) for p, r in baseline_runs]
        dev = resampled_deviations(score, method_runs + baseline_runs, codes, n_clusters, resamples, seed,
                                   budget_seconds, min_resamples)
        drawn = len(dev)
    dev = dev * math.sqrt(n_clusters / max(n_clusters - 1, 1))  # unbiased, as a sample variance over clusters
    um, ub = dev[:, :km], dev[:, km:]
    observed = statistics.fmean(m_full) - statistics.fmean(b_full)
    df_ex = max(n_clusters - 1, 1)
    v_ex = float(np.sum((um.mean(1) - ub.mean(1)) ** 2))
    seed_aware = km >= MIN_SEEDS and kb >= MIN_SEEDS
    pivots: list[tuple[float, float, int]] = []  # per random seed term: (S^2, v_int, k)
    if seed_aware:
        sides = [(np.subtract(m_full, b_full), um - ub)] if paired else [(np.array(m_full), um), (np.array(b_full), ub)]
        for per_seed_scores, u in sides:
            k = len(per_seed_scores)
            v_int = float(np.sum((u - u.mean(1, keepdims=True)) ** 2)) / (k - 1)
            pivots.append((float(np.var(per_seed_scores, ddof=1)), v_int, k))
    dist = _Pivot(observed, v_ex, df_ex, pivots)
    se, seed_var = dist.se, dist.seed_variance
    low, high = dist.quantile((1 - confidence) / 2), dist.quantile((1 + confidence) / 2)
    from scipy import stats

    q_ex = float(stats.t.ppf(0.5 + confidence / 2, df_ex))
    pooled = (observed - q_ex * math.sqrt(v_ex), observed + q_ex * math.sqrt(v_ex))
    degenerate = dist.se == 0  # no variance at all (e.g. the same predictions on both sides)
    at0 = dist.cdf(0.0)
    p = (1.0 if observed == 0 else 0.0) if degenerate else float(min(1.0, 2 * min(at0, 1 - at0)))
    p_eq = floor = None
    if margin is not None:
        p_eq = ((0.0 if abs(observed) < margin else 1.0) if degenerate
                else float(min(1.0, max(dist.cdf(-margin), 1 - dist.cdf(margin)))))
        floor = float(stats.t.sf(margin / math.sqrt(v_ex), df_ex)) if v_ex > 0 else 0.0
    lo_b, hi_b = bounds
    span = None if lo_b is None or hi_b is None else hi_b - lo_b
    clipped = False
    if span is not None:
        clipped = low < -span or high > span
        low, high = max(low, -span), min(high, span)
        pooled = (max(pooled[0], -span), min(pooled[1], span))
    per_seed = tuple(zip(ms, m_full, b_full)) if paired else ()
    return Comparison(metric, observed, low, high, p, p_eq, margin, n, (km, kb), paired, drawn, per_seed, pooled,
                      se=se, seed_aware=seed_aware,
                      n_clusters=n_clusters if clusters is not None else None, seed_variance=seed_var,
                      example_variance=v_ex, equivalence_floor=floor, clipped=clipped)


def from_summaries(per_seed: Sequence[float], example_variance: float, n_examples: int,
                   margin: float | None = None, confidence: float = CONFIDENCE) -> tuple[float, float, float, float | None]:
    """The seed-aware test from what a report printed, where the per-example predictions are gone: the per-seed
    differences and the examples-only variance of their mean. The interaction term cannot be subtracted without
    the examples, so the variance is S^2 / k + v_ex, at least the one ``seed_aware_test`` would use (the
    verdict can only be more cautious). (low, high, p, TOST p)."""
    k = len(per_seed)
    d = float(np.mean(per_seed))
    terms = [(float(np.var(per_seed, ddof=1)), 0.0, k)] if k >= MIN_SEEDS else []
    dist = _Pivot(d, example_variance, max(n_examples - 1, 1), terms)
    at0 = dist.cdf(0.0)
    p_eq = None if margin is None else float(min(1.0, max(dist.cdf(-margin), 1 - dist.cdf(margin))))
    return (dist.quantile((1 - confidence) / 2), dist.quantile((1 + confidence) / 2),
            float(min(1.0, 2 * min(at0, 1 - at0))), p_eq)


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


# ---------------------------------------------------------------- tuning budgets

def expected_max(values: Sequence[float], n: int, replacement: bool = False) -> float:
    """The expected best of ``n`` tuning trials, from the ``N`` trials that ran (scores ``values``, higher is
    better): without ``replacement``, the unbiased U-statistic of Tang et al. (2020), the mean of the best over
    every n-subset, sum_i v_(i) C(i-1, n-1) / C(N, n) (n <= N); with it, Dodge et al.'s (2019) expected maximum of
    n draws from the trials' empirical distribution, sum_i v_(i) [(i / N)^n - ((i - 1) / N)^n]."""
    v = np.sort(np.asarray(values, dtype=float))
    big = len(v)
    if big == 0 or n < 1:
        raise ValueError("expected_max needs at least one trial and n >= 1")
    i = np.arange(1, big + 1)
    if replacement:
        return float(np.sum(v * ((i / big) ** n - ((i - 1) / big) ** n)))
    if n > big:
        raise ValueError(f"the unbiased estimate needs n <= the {big} trials that ran (got n = {n})")
    weights = np.array([math.comb(k - 1, n - 1) for k in i], dtype=float) / math.comb(big, n)
    return float(np.sum(v * weights))


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


def _ranks(scores: np.ndarray, higher: Sequence[bool] | None = None) -> np.ndarray:
    """Per row, rank 1 for the best score -- the highest, or the lowest where ``higher[row]`` is False (a
    lower-is-better metric: its task's declaration); ties get their average rank."""
    from scipy.stats import rankdata

    higher = [True] * len(scores) if higher is None else list(higher)
    return np.vstack([rankdata(-row if up else row) for row, up in zip(scores, higher)])


def friedman(scores: np.ndarray, higher: Sequence[bool] | None = None) -> tuple[float, float]:
    """Friedman's chi-square over blocks (rows) x treatments (columns), with the correction for ties that
    scipy's ``friedmanchisquare`` applies; p from chi-square with k - 1 degrees of freedom. Defined for k >= 2
    (scipy asks for 3)."""
    from scipy.stats import chi2

    scores = np.asarray(scores, dtype=float)
    n, k = scores.shape
    ranks = _ranks(scores, higher)
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


def rank_methods(scores: np.ndarray, methods: Sequence[str], blocks: Sequence[str], alpha: float = 0.05,
                 higher: Sequence[bool] | None = None) -> Ranking:
    """``higher``: per block, whether its metric is better higher (default: every block)."""
    scores = np.asarray(scores, dtype=float)
    ranks = _ranks(scores, higher)
    stat, p = friedman(scores, higher)
    return Ranking(tuple(methods), tuple(blocks), tuple(tuple(map(float, r)) for r in ranks),
                   tuple(map(float, ranks.mean(0))), stat, p, nemenyi_cd(len(methods), len(blocks), alpha), alpha)
