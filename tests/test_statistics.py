"""The seed-aware statistics against their references: Holm / Bonferroni against statsmodels' multipletests,
Friedman against scipy's friedmanchisquare and Demšar's worked example, the Nemenyi critical difference
against Demšar's table, the two-stage bootstrap against scipy's bootstrap where it reduces to one stage, the
TOST p-value against the percentile interval it inverts -- on randomised cases -- and the case the brief names:
a difference the examples-only bootstrap calls "better" that seed variance makes inconclusive."""
import math

import numpy as np
import pytest

from peftbench.report.statistics import (adjust, bootstrap_p_values, friedman, hierarchical_bootstrap, nemenyi_cd,
                                         paired_bootstrap, rank_methods)

statsmodels = pytest.importorskip("statsmodels.stats.multitest")


def _mean(p, r):
    return float(np.mean(p))


@pytest.mark.parametrize("method", ["holm", "bonferroni"])
def test_corrections_equal_statsmodels_on_random_p_values(method):
    rng = np.random.default_rng(7)
    for trial in range(200):
        m = int(rng.integers(1, 40))
        p = rng.uniform(0, 1, m) ** rng.uniform(0.5, 4)  # many small ones too
        if trial % 5 == 0:
            p[: m // 2] = p[0]  # ties
        ours = adjust(p, method)
        ref = statsmodels.multipletests(p, alpha=0.05, method=method)[1]
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    assert adjust([], "holm") == [] and adjust([0.01, 0.5], "none") == [0.01, 0.5]
    with pytest.raises(ValueError, match="allowed: holm, bonferroni, none"):
        adjust([0.1], "hochberg")


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.04 = 0.04 (monotone)
    assert adjust([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])


def test_friedman_equals_scipy_with_ties_and_demsar_by_hand():
    from scipy.stats import friedmanchisquare

    rng = np.random.default_rng(3)
    for _ in range(200):
        n, k = int(rng.integers(2, 15)), int(rng.integers(3, 7))
        scores = rng.integers(0, 5, (n, k)).astype(float)  # small integers: many ties
        if np.all(scores == scores[:, :1]):
            continue
        stat, p = friedman(scores)
        ref = friedmanchisquare(*scores.T)
        assert stat == pytest.approx(ref.statistic, rel=1e-10) and p == pytest.approx(ref.pvalue, rel=1e-9)
    # Demšar (2006), section 3.2.2: four C4.5 variants on 14 data sets, average ranks 3.143, 2.000, 2.893, 1.964
    # -> chi2_F = 12 N / (k (k+1)) [sum R_j^2 - k (k+1)^2 / 4] = 9.28 (ties change nothing without ties)
    r = np.array([3.143, 2.000, 2.893, 1.964])
    assert 12 * 14 / 20 * (np.sum(r ** 2) - 4 * 25 / 4) == pytest.approx(9.28, abs=0.01)
    ranks = np.tile([1.0, 2.0], (5, 1))  # two methods, one always better: chi2 = N (k = 2)
    assert friedman(-ranks)[0] == pytest.approx(5.0)
    assert friedman(np.ones((4, 3))) == (0.0, 1.0)


def test_nemenyi_critical_difference_equals_demsar():
    # Demšar's table 5(a): q_0.05 = 1.960, 2.343, 2.569, 2.728 for k = 2..5; CD(k=4, N=14) = 1.25
    for k, q in ((2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728)):
        assert nemenyi_cd(k, 6, 0.05) / math.sqrt(k * (k + 1) / 36) == pytest.approx(q, abs=1e-3)
    assert nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.005)
    ranking = rank_methods(np.array([[0.9, 0.8, 0.7], [0.6, 0.7, 0.5], [0.8, 0.8, 0.1]]), ["a", "b", "c"],
                           ["t1", "t2", "t3"])
    assert ranking.ranks[2] == (1.5, 1.5, 3.0) and ranking.average == pytest.approx((1.5, 1.5, 3.0))  # (1 + 2 + 1.5) / 3 each


def test_one_seed_two_stage_bootstrap_is_scipys_paired_percentile_bootstrap():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(11)
    for _ in range(5):
        n = int(rng.integers(80, 300))
        a = rng.normal(0.6, 0.3, n)
        b = a - rng.normal(rng.uniform(-0.05, 0.1), 0.2, n)
        ours = hierarchical_bootstrap(_mean, [(a, a)], [(b, b)], "score", resamples=4000, seed=1,
                                      budget_seconds=None)
        ref = bootstrap((a, b), lambda x, y: np.mean(x) - np.mean(y), paired=True, n_resamples=4000,
                        method="percentile", random_state=2)
        width = ref.confidence_interval.high - ref.confidence_interval.low
        assert ours.difference == pytest.approx(np.mean(a) - np.mean(b))
        assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.06 * width)
        assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.06 * width)


def test_without_example_noise_the_two_stage_bootstrap_resamples_the_seeds():
    """Scores constant within each seed: only the seed stage varies, so the interval is scipy's percentile
    bootstrap of the per-seed differences."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(5)
    for _ in range(5):
        s = 8
        per_seed = rng.normal(0.02, 0.05, s)
        method = [(np.full(50, 0.5 + d), np.full(50, 0.5 + d)) for d in per_seed]
        base = [(np.full(50, 0.5), np.full(50, 0.5)) for _ in per_seed]
        ours = hierarchical_bootstrap(_mean, method, base, "score", resamples=4000, seed=3, budget_seconds=None,
                                      method_seeds=range(s), baseline_seeds=range(s))
        ref = bootstrap((per_seed,), np.mean, n_resamples=4000, method="percentile", random_state=4)
        width = ref.confidence_interval.high - ref.confidence_interval.low
        assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.06 * width)
        assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.06 * width)
        assert ours.paired_seeds and [x[0] for x in ours.per_seed] == list(range(s))


def test_p_values_invert_the_percentile_interval():
    rng = np.random.default_rng(9)
    for _ in range(300):
        diffs = rng.normal(rng.uniform(-0.05, 0.05), rng.uniform(0.005, 0.05), 999)
        margin = float(rng.uniform(0.01, 0.06))
        p, p_eq = bootstrap_p_values(diffs, margin)
        low, high = np.percentile(diffs, [2.5, 97.5])
        if abs(p - 0.05) > 0.004:  # away from the boundary the two agree exactly
            assert (p < 0.05) == (low > 0 or high < 0)
        low90, high90 = np.percentile(diffs, [5, 95])
        if abs(p_eq - 0.05) > 0.004:  # TOST at 5% = the 90% interval inside (-margin, margin)
            assert (p_eq < 0.05) == (low90 > -margin and high90 < margin)
    assert bootstrap_p_values(np.zeros(99))[0] == 1.0
    assert bootstrap_p_values(np.full(99, 0.5))[0] == pytest.approx(2 / 100)


def test_seed_variance_turns_an_examples_only_better_into_inconclusive():
    """Three seeds: the method wins big on two and loses on the third. Pooled over seeds with the models held
    fixed, 600 test examples make +7 points look certain; resampling the seeds shows it is not."""
    rng = np.random.default_rng(0)
    n = 600
    refs = rng.integers(0, 2, n)

    def run(acc):
        right = rng.uniform(size=n) < acc
        return np.where(right, refs, 1 - refs), refs

    acc = lambda p, r: float(np.mean(np.asarray(p) == np.asarray(r)))  # noqa: E731
    base = [run(0.70), run(0.70), run(0.70)]
    method = [run(0.85), run(0.85), run(0.62)]
    pooled = paired_bootstrap(acc, method, base, "accuracy", resamples=1000)
    seed_aware = hierarchical_bootstrap(acc, method, base, "accuracy", resamples=1000, seed=1, margin=0.02,
                                        method_seeds=[1, 2, 3], baseline_seeds=[1, 2, 3])
    assert pooled.significant and pooled.low > 0  # "better", models held fixed
    assert seed_aware.low < 0 < seed_aware.high and seed_aware.p > 0.05  # inconclusive
    assert seed_aware.p_equivalence > 0.05  # and not shown equivalent either
    assert seed_aware.difference == pytest.approx(pooled.difference)
    assert len(seed_aware.per_seed) == 3 and seed_aware.per_seed[2][1] < seed_aware.per_seed[2][2]


def test_equivalence_is_shown_when_the_interval_sits_inside_the_margin():
    rng = np.random.default_rng(2)
    n = 3000
    refs = rng.integers(0, 2, n)
    right = rng.uniform(size=(6, n)) < 0.8
    runs = [(np.where(r, refs, 1 - refs), refs) for r in right]
    acc = lambda p, r: float(np.mean(np.asarray(p) == np.asarray(r)))  # noqa: E731
    res = hierarchical_bootstrap(acc, runs[:3], runs[3:], "accuracy", resamples=600, margin=0.03,
                                 method_seeds=[1, 2, 3], baseline_seeds=[1, 2, 3])
    assert res.p > 0.05 and res.p_equivalence < 0.05
    unpaired = hierarchical_bootstrap(acc, runs[:3], runs[3:5], "accuracy", resamples=300, margin=0.03,
                                      method_seeds=[1, 2, 3], baseline_seeds=[1, 2])
    assert not unpaired.paired_seeds and unpaired.per_seed == () and unpaired.seeds == (3, 2)


def test_pes_flags_memory_below_e_and_rankings_that_flip_under_five_percent_memory():
    import math

    from peftbench.report.pes import pes_flags

    # by hand: P = 100M for both; at V = 3 GB a 0.80 vs 0.79 lead is undone when the leader's memory is 5% higher
    # and the other's 5% lower: 0.80 / (ln 100 ln 3.15) = 0.1514 < 0.79 / (ln 100 ln 2.85) = 0.1638
    assert 0.80 / (math.log(100) * math.log(3.15)) < 0.79 / (math.log(100) * math.log(2.85))
    flags = pes_flags([(0.80, 100, 3.0), (0.79, 100, 3.0), (0.50, 100, 3.0)])
    assert all("ranking flips under ±5% memory (published)" in f for f in flags[:2]) and flags[2] == []
    assert pes_flags([(0.9, 100, 8.0), (0.5, 100, 8.0)]) == [[], []]  # a clear lead, V well above e GB
    below = pes_flags([(0.9, 100, 1.5), (0.5, 100, 0.5)])  # V <= 1 for one: the variant decides, both flagged
    assert all(any(x.startswith("V < e GB") for x in f) for f in below)
    assert not any("flips" in x for f in below for x in f)
    assert pes_flags([(None, 100, 3.0), (0.5, 100, 3.0)]) == [[], []]


def test_seed_aware_interval_matches_the_spread_of_a_crossed_seed_by_example_design():
    """Scores d[s, j] = a_s + b_j + e_sj: seeds and test examples crossed (every seed scored on one test set).
    The true standard error of the mean difference is sqrt(σa²/S + σb²/n + σe²/(S n)); the bootstrap's spread,
    averaged over simulated data sets, matches it within 20% (drawing examples anew per seed would give
    sqrt(σa²/S + σb²/(S n) + ...), 25% too small here)."""
    rng = np.random.default_rng(12)
    s_count, n, sa, sb, se = 5, 300, 0.03, 0.3, 0.3
    truth = math.sqrt(sa ** 2 / s_count + sb ** 2 / n + se ** 2 / (s_count * n))
    spreads = []
    for rep in range(20):
        d = rng.normal(0, sa, (s_count, 1)) + rng.normal(0, sb, (1, n)) + rng.normal(0, se, (s_count, n))
        method = [(row, row) for row in d]
        base = [(np.zeros(n), np.zeros(n)) for _ in range(s_count)]
        res = hierarchical_bootstrap(_mean, method, base, "score", resamples=400, seed=rep, budget_seconds=None,
                                     method_seeds=range(s_count), baseline_seeds=range(s_count))
        spreads.append((res.high - res.low) / (2 * 1.96))
    assert np.mean(spreads) == pytest.approx(truth, rel=0.2)
    nested = math.sqrt(sa ** 2 / s_count + sb ** 2 / (s_count * n) + se ** 2 / (s_count * n))
    assert abs(np.mean(spreads) - truth) < abs(np.mean(spreads) - nested)
