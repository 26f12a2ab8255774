"""Simulated studies for the seed-aware verdicts: crossed designs (k seeds x n test examples, every seed's model
scored on the one test set) with a known true difference, scored by the project's own ``seed_aware_test`` and
``decide`` -- and, for contrast, by the percentile two-stage bootstrap that shipped until b675069 (``legacy``).

Two generating models of whether model (method m, seed s) gets test example i right:

* ``logistic``: P(right) = sigmoid(theta + delta_m + a_ms + b_i + c_mi), drawn independently for every model:
  seeds disagree on many examples (about a third here);
* ``threshold``: right = [theta + delta_m + a_ms + c_mi + e_msi > b_i] with a small e: seeds of one method agree
  on ~94% of the examples.

a_ms ~ N(0, sa): the seed's effect (``seed_sd``: the standard deviation it gives one model's accuracy, in points);
b_i ~ N(0, sb): how hard the example is for everyone; c_mi ~ N(0, sc): how much harder it is for method m (the
test-set component of a difference); delta_m: the method's effect, set so that the true difference of expected
accuracy over seeds and examples is ``delta`` points exactly. Used by tests/test_calibration.py (a small seeded
set of cells) and bench/verdict_calibration.py (the full table in docs/statistics.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from peftbench.report.statistics import adjust, seed_aware_test

THETA = math.log(0.75 / 0.25)  # a 75%-accurate method
SB = 1.5
NOISE = {"logistic": 0.0, "threshold": 0.3}  # e's sd in the threshold model (seeds agree on ~94%)
SC = {"logistic": 0.8, "threshold": 0.5}  # method x example sd: the test-set component of the difference
_GH = np.polynomial.hermite_e.hermegauss(80)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def expected_accuracy(model: str, shift: float, sa: float) -> float:
    """E over seeds, examples (and noise) of P(right) for a method shifted by ``shift`` on the latent scale."""
    if model == "threshold":
        from scipy.stats import norm

        return float(norm.cdf((THETA + shift) / math.sqrt(sa ** 2 + SC[model] ** 2 + NOISE[model] ** 2 + SB ** 2)))
    x, w = _GH
    sd = math.sqrt(sa ** 2 + SB ** 2 + SC[model] ** 2)
    return float(np.sum(w * _sigmoid(THETA + shift + sd * x)) / np.sum(w))


def latent_per_point(model: str) -> float:
    """How far the latent scale moves one model's expected accuracy by one point (near theta)."""
    h = 0.01
    return h / (100 * (expected_accuracy(model, h, 0.0) - expected_accuracy(model, 0.0, 0.0)))


def shift_for(model: str, delta_points: float, sa: float) -> float:
    """The latent shift that makes the true accuracy difference ``delta_points`` exactly."""
    from scipy.optimize import brentq

    if delta_points == 0:
        return 0.0
    base = expected_accuracy(model, 0.0, sa)
    return brentq(lambda d: 100 * (expected_accuracy(model, d, sa) - base) - delta_points, -5, 5)


@dataclass(frozen=True)
class Design:
    model: str  # logistic | threshold
    seeds: int
    seed_sd: float  # points of one model's accuracy
    delta: float = 0.0  # true difference, points
    n: int = 500
    methods: int = 1  # methods compared with one baseline (a report's family)
    clusters: int | None = None  # aligned clusters of this many examples each share b_i (None: independent)


def simulate(design: Design, reps: int, rng: np.random.Generator) -> np.ndarray:
    """reps x (1 + methods) x seeds x n right / wrong; index 0 of the second axis is the baseline."""
    d = design
    sa = d.seed_sd * latent_per_point(d.model)
    shift = shift_for(d.model, d.delta, sa)
    out = np.empty((reps, 1 + d.methods, d.seeds, d.n), dtype=np.int8)
    for r in range(reps):
        if d.clusters:
            b = np.repeat(rng.normal(0, SB, math.ceil(d.n / d.clusters)), d.clusters)[: d.n]
            b = b + rng.normal(0, 0.2, d.n)
        else:
            b = rng.normal(0, SB, d.n)
        if d.clusters:  # aligned translations: hard or easy for a method together
            groups = math.ceil(d.n / d.clusters)
            c = np.repeat(rng.normal(0, SC[d.model], (1 + d.methods, 1, groups)), d.clusters, axis=2)[..., : d.n]
        else:
            c = rng.normal(0, SC[d.model], (1 + d.methods, 1, d.n))
        a = rng.normal(0, sa, (1 + d.methods, d.seeds, 1))
        eff = np.zeros((1 + d.methods, 1, 1))
        eff[1:] = shift
        latent = THETA + eff + a + c
        if d.model == "logistic":
            out[r] = rng.uniform(size=latent.shape[:2] + (d.n,)) < _sigmoid(latent + b)
        else:
            out[r] = latent + rng.normal(0, NOISE[d.model], latent.shape[:2] + (d.n,)) > b
    return out


def _mean(p, r):
    return float(np.mean(p))


def new_test(method: np.ndarray, base: np.ndarray, margin: float | None, clusters=None):
    """The project's comparison on accuracy (a mean of per-example scores), paired seeds."""
    k = len(method)
    return seed_aware_test(_mean, [(x, x) for x in method], [(x, x) for x in base], "accuracy", mean_metric=True,
                           margin=margin, method_seeds=range(k), baseline_seeds=range(k), clusters=clusters)


def legacy(method: np.ndarray, base: np.ndarray, margin: float | None, resamples: int = 1000, seed: int = 0):
    """The two-stage percentile bootstrap that shipped until b675069 (report/statistics.hierarchical_bootstrap),
    for a mean metric and paired seeds, vectorised: per resample k seed slots drawn with replacement (the same on
    both sides) and one draw of the test examples shared by every slot; the percentile interval, p the smallest
    level at which it excludes 0 ((1 + count) / (B + 1)), TOST from the same draws. (low, high, p, p_eq)."""
    rng = np.random.default_rng(seed)
    k, n = method.shape
    diff = (method - base).astype(float)  # k x n
    slots = rng.integers(0, k, (resamples, k))
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])
    per_seed = counts @ diff.T / n  # resample b, seed s: seed s's difference on draw b of the examples
    out = np.take_along_axis(per_seed, slots, axis=1).mean(1)
    low, high = np.percentile(out, [2.5, 97.5])
    below, above = int(np.sum(out <= 0)), int(np.sum(out >= 0))
    p = min(1.0, 2 * (1 + min(below, above)) / (resamples + 1))
    p_eq = None
    if margin is not None:
        p_eq = min(1.0, max((1 + int(np.sum(out <= -margin))) / (resamples + 1),
                            (1 + int(np.sum(out >= margin))) / (resamples + 1)))
    return float(low), float(high), p, p_eq


@dataclass
class Cell:
    design: Design
    reps: int
    coverage: float  # the 95% interval holds the truth
    false_positive: float  # better / worse called (at delta 0: an error; at delta != 0: power)
    equivalent: float  # "equivalent" called at ``margin``
    familywise: float | None = None  # Holm over the design's methods: at least one better / worse
    legacy_coverage: float | None = None
    legacy_rejects: float | None = None
    agreement: float | None = None  # share of examples on which two seeds of one method agree

    def se(self, rate: float) -> float:
        return math.sqrt(max(rate * (1 - rate), 1e-12) / self.reps)


def run_cell(design: Design, reps: int, seed: int, margin: float = 2.0, with_legacy: bool = False,
             alpha: float = 0.05, chunk: int = 100) -> Cell:
    """``reps`` simulated studies of ``design``; rates over them. ``margin`` in points (TOST)."""
    rng = np.random.default_rng(seed)
    truth = design.delta / 100
    cover = reject = equiv = fwe = 0
    lcover = lrej = 0
    agree = []
    clusters = None if not design.clusters else np.arange(design.n) // design.clusters
    done = 0
    while done < reps:
        batch = simulate(design, min(chunk, reps - done), rng)
        for study in batch:
            base = study[0]
            ps, first = [], None
            for m in range(1, 1 + design.methods):
                r = new_test(study[m], base, margin / 100, clusters)
                ps.append(r.p)
                if first is None:
                    first = r
            cover += first.low <= truth <= first.high
            reject += first.p < alpha
            equiv += first.p_equivalence is not None and first.p_equivalence < alpha
            if design.methods > 1:
                fwe += min(adjust(ps, "holm")) < alpha
            if with_legacy:
                low, high, p, _ = legacy(study[1], base, margin / 100, seed=done)
                lcover += low <= truth <= high
                lrej += p < alpha
            if len(agree) < 20:
                agree.append(float(np.mean(study[0][0] == study[0][1])) if design.seeds > 1 else float("nan"))
        done += len(batch)
    return Cell(design, reps, cover / reps, reject / reps, equiv / reps,
                fwe / reps if design.methods > 1 else None,
                lcover / reps if with_legacy else None, lrej / reps if with_legacy else None,
                float(np.nanmean(agree)) if agree else None)
