"""The seed-aware statistics against their references: Holm / Bonferroni against statsmodels' multipletests,
Friedman against scipy's friedmanchisquare and Demšar's worked example, the Nemenyi critical difference
against Demšar's table; the seed-aware test's variance against statsmodels' crossed two-way ANOVA and its
cluster-robust standard error, its one-seed and no-example-noise limits against scipy's t-tests (TOST too), its
resampled variances against the exact ones -- on randomised cases -- and the case the brief names: a difference
the examples-only interval calls "better" that seed variance makes inconclusive. Its calibration (coverage,
error rates) is simulated in tests/test_calibration.py."""
import math

import numpy as np
import pytest

from peftbench.report.statistics import adjust, friedman, nemenyi_cd, rank_methods, seed_aware_test

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


def _paired(d_method, d_base, **kw):
    k = len(d_method)
    return seed_aware_test(_mean, [(x, x) for x in d_method], [(x, x) for x in d_base], "score", mean_metric=True,
                           method_seeds=range(k), baseline_seeds=range(k), **kw)


def test_the_variance_is_the_crossed_anovas_on_random_designs():
    """Without clusters the estimate is (MS_seed + MS_examples - MS_residual) / (k n) of the two-way crossed
    ANOVA (seed x example, one observation a cell) of the per-example differences -- statsmodels' anova_lm."""
    pd = pytest.importorskip("pandas")
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(21)
    for _ in range(12):
        k, n = int(rng.integers(3, 7)), int(rng.integers(20, 60))
        d = (rng.normal(0, rng.uniform(0.01, 0.2), (k, 1)) + rng.normal(0, rng.uniform(0.1, 1), (1, n))
             + rng.normal(0, rng.uniform(0.1, 1), (k, n)))
        res = _paired(d, np.zeros((k, n)))
        frame = pd.DataFrame({"d": d.ravel(), "seed": np.repeat(np.arange(k), n).astype(str),
                              "ex": np.tile(np.arange(n), k).astype(str)})
        table = anova_lm(ols("d ~ C(seed) + C(ex)", frame).fit())
        ms_seed, ms_ex, ms_res = table["mean_sq"].values[:3]
        assert ms_ex >= ms_res  # the example term is not truncated here
        assert res.se ** 2 == pytest.approx((ms_seed + ms_ex - ms_res) / (k * n), rel=1e-9)
        assert res.example_variance == pytest.approx(ms_ex / (k * n), rel=1e-9)
        assert res.difference == pytest.approx(d.mean()) and res.seed_aware and res.resamples == 0


def test_one_seed_is_the_paired_t_interval_and_says_it_is_about_those_models():
    from scipy import stats

    rng = np.random.default_rng(11)
    for _ in range(5):
        n = int(rng.integers(80, 300))
        a = rng.normal(0.6, 0.3, n)
        b = a - rng.normal(rng.uniform(-0.05, 0.1), 0.2, n)
        res = _paired([a], [b], margin=0.05)
        ref = stats.ttest_rel(a, b)
        ci = ref.confidence_interval(0.95)
        assert not res.seed_aware and res.p == pytest.approx(ref.pvalue, rel=1e-6)
        assert (res.low, res.high) == (pytest.approx(ci.low, rel=1e-6), pytest.approx(ci.high, rel=1e-6))
        lower = stats.ttest_1samp(a - b, -0.05, alternative="greater").pvalue
        upper = stats.ttest_1samp(a - b, 0.05, alternative="less").pvalue
        assert res.p_equivalence == pytest.approx(max(lower, upper), rel=1e-6)
    two = _paired(np.ones((2, 50)), np.zeros((2, 50)))
    assert not two.seed_aware  # two seeds: the seed variance is not estimated either


def test_without_example_noise_it_is_the_t_test_of_the_per_seed_differences():
    """Scores constant within each seed: only seeds vary, the pivot is exactly Student's t on k - 1 df."""
    from scipy import stats

    rng = np.random.default_rng(5)
    for k in (3, 5, 8):
        per_seed = rng.normal(0.02, 0.05, k)
        res = _paired([np.full(50, 0.5 + x) for x in per_seed], [np.full(50, 0.5) for _ in per_seed], margin=0.03)
        ref = stats.ttest_1samp(per_seed, 0)
        ci = ref.confidence_interval(0.95)
        assert res.p == pytest.approx(ref.pvalue, abs=2e-4)
        assert res.low == pytest.approx(ci.low, abs=1e-3 * (ci.high - ci.low))
        assert res.high == pytest.approx(ci.high, abs=1e-3 * (ci.high - ci.low))
        tost = max(stats.ttest_1samp(per_seed, -0.03, alternative="greater").pvalue,
                   stats.ttest_1samp(per_seed, 0.03, alternative="less").pvalue)
        assert res.p_equivalence == pytest.approx(tost, abs=2e-4)
        assert [x[0] for x in res.per_seed] == list(range(k)) and res.paired_seeds


def test_clusters_are_statsmodels_cluster_robust_standard_error():
    """One seed, examples in clusters: the variance is the cluster-robust (CR1) variance of a mean, as statsmodels'
    OLS on an intercept computes it with cov_type='cluster'; with every example its own cluster it is the
    ordinary one."""
    import statsmodels.api as sm

    rng = np.random.default_rng(8)
    for _ in range(5):
        groups = int(rng.integers(20, 80))
        sizes = rng.integers(1, 6, groups)
        g = np.repeat(np.arange(groups), sizes)
        d = rng.normal(0, 0.3, groups)[g] + rng.normal(0, 0.3, len(g))
        res = _paired([d], [np.zeros(len(g))], clusters=[f"c{x}" for x in g])
        fit = sm.OLS(d, np.ones((len(g), 1))).fit(cov_type="cluster", cov_kwds={"groups": g})
        assert res.se == pytest.approx(float(fit.bse[0]), rel=1e-9) and res.n_clusters == groups
        plain = _paired([d], [np.zeros(len(g))])
        assert plain.se == pytest.approx(float(np.std(d, ddof=1) / np.sqrt(len(d))), rel=1e-9)
    with pytest.raises(ValueError, match="cluster ids"):
        _paired([d], [np.zeros(len(g))], clusters=["a"])


def test_resampled_variances_agree_with_the_exact_ones():
    """A metric handed over as a black box (no ``mean_metric``) is resampled: on accuracy its variances match the
    exact ones within Monte-Carlo error, clusters or not."""
    rng = np.random.default_rng(4)
    k, n = 4, 300
    refs = rng.integers(0, 2, n)
    right = rng.uniform(size=(2 * k, n)) < np.r_[np.full(k, 0.8), np.full(k, 0.7)][:, None]
    preds = [np.where(r, refs, 1 - refs) for r in right]
    acc = lambda p, r: float(np.mean(np.asarray(p) == np.asarray(r)))  # noqa: E731
    clusters = np.arange(n) // 3
    for cl in (None, clusters):
        exact = seed_aware_test(_mean, [(r.astype(float), r.astype(float)) for r in right[:k]],
                                [(r.astype(float), r.astype(float)) for r in right[k:]], "accuracy",
                                mean_metric=True, clusters=cl)
        drawn = seed_aware_test(acc, [(p, refs) for p in preds[:k]], [(p, refs) for p in preds[k:]], "accuracy",
                                resamples=4000, budget_seconds=None, clusters=cl)
        assert drawn.resamples == 4000 and drawn.difference == pytest.approx(exact.difference)
        assert drawn.example_variance == pytest.approx(exact.example_variance, rel=0.1)
        assert drawn.se == pytest.approx(exact.se, rel=0.1)


def test_seed_variance_turns_an_examples_only_better_into_inconclusive():
    """Three seeds: the method wins big on two and loses on the third. With the models held fixed, 600 test
    examples make +7 points look certain; the seed-aware test shows it is not."""
    rng = np.random.default_rng(0)
    n = 600
    refs = rng.integers(0, 2, n)

    def run(acc):
        right = (rng.uniform(size=n) < acc).astype(float)
        return right, right

    base = [run(0.70), run(0.70), run(0.70)]
    method = [run(0.85), run(0.85), run(0.62)]
    res = seed_aware_test(_mean, method, base, "accuracy", mean_metric=True, margin=0.02,
                          method_seeds=[1, 2, 3], baseline_seeds=[1, 2, 3])
    assert res.pooled[0] > 0  # "better", models held fixed
    assert res.low < 0 < res.high and res.p > 0.05  # inconclusive
    assert res.p_equivalence > 0.05  # and not shown equivalent either
    assert len(res.per_seed) == 3 and res.per_seed[2][1] < res.per_seed[2][2]


def test_equivalence_is_shown_when_the_interval_sits_inside_the_margin_and_bounded_metrics_clip():
    rng = np.random.default_rng(2)
    n = 3000
    right = (rng.uniform(size=(6, n)) < 0.8).astype(float)
    runs = [(r, r) for r in right]
    res = seed_aware_test(_mean, runs[:3], runs[3:], "accuracy", mean_metric=True, margin=0.03,
                          method_seeds=[1, 2, 3], baseline_seeds=[1, 2, 3])
    assert res.p > 0.05 and res.p_equivalence < 0.05 and res.equivalence_floor < 1e-6
    unpaired = seed_aware_test(_mean, runs[:3], runs[3:6], "accuracy", mean_metric=True, margin=0.03,
                               method_seeds=[1, 2, 3], baseline_seeds=[4, 5, 6])
    assert not unpaired.paired_seeds and unpaired.per_seed == () and unpaired.seeds == (3, 3)
    assert unpaired.low < unpaired.difference < unpaired.high
    # a near-perfect method against a near-zero baseline, widely spread over 3 seeds: the interval stops at +1
    hi = [np.full(40, v) for v in (1.0, 1.0, 0.2)]
    lo = [np.zeros(40) for _ in range(3)]
    wide = _paired(hi, lo, bounds=(0.0, 1.0))
    assert wide.clipped and wide.high == 1.0 and wide.low >= -1.0
    assert not _paired(hi, lo).clipped  # no bounds given: nothing clipped


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
    The true standard error of the mean difference is sqrt(σa²/S + σb²/n + σe²/(S n)); the estimated standard
    error, averaged over simulated data sets, matches it within 10% (drawing examples anew per seed would give
    sqrt(σa²/S + σb²/(S n) + ...), 25% too small here)."""
    rng = np.random.default_rng(12)
    s_count, n, sa, sb, se = 5, 300, 0.03, 0.3, 0.3
    truth = math.sqrt(sa ** 2 / s_count + sb ** 2 / n + se ** 2 / (s_count * n))
    ses = []
    for rep in range(200):
        d = rng.normal(0, sa, (s_count, 1)) + rng.normal(0, sb, (1, n)) + rng.normal(0, se, (s_count, n))
        ses.append(_paired(d, np.zeros((s_count, n))).se ** 2)
    assert math.sqrt(np.mean(ses)) == pytest.approx(truth, rel=0.1)
    nested = math.sqrt(sa ** 2 / s_count + sb ** 2 / (s_count * n) + se ** 2 / (s_count * n))
    assert abs(math.sqrt(np.mean(ses)) - truth) < abs(math.sqrt(np.mean(ses)) - nested)


def test_expected_best_of_n_trials_by_hand_and_by_brute_force():
    """Tang et al.'s unbiased estimator is the mean best over every n-subset of the trials that ran; Dodge et al.'s
    the mean best over every n-tuple drawn with replacement; both by hand on three trials."""
    import itertools

    from peftbench.report.statistics import expected_max

    # by hand: trials 0.2, 0.5, 0.9; n = 2: subsets {.2,.5} {.2,.9} {.5,.9} -> (0.5 + 0.9 + 0.9) / 3
    assert expected_max([0.5, 0.9, 0.2], 2) == pytest.approx((0.5 + 0.9 + 0.9) / 3)
    assert expected_max([0.5, 0.9, 0.2], 1) == pytest.approx(np.mean([0.5, 0.9, 0.2]))
    assert expected_max([0.5, 0.9, 0.2], 3) == pytest.approx(0.9)
    # with replacement, n = 2: P(max = v_(i)) = (i/3)^2 - ((i-1)/3)^2 -> 0.2/9 + 0.5*3/9 + 0.9*5/9
    assert expected_max([0.5, 0.9, 0.2], 2, replacement=True) == pytest.approx((0.2 + 1.5 + 4.5) / 9)
    rng = np.random.default_rng(17)
    for _ in range(30):
        big = int(rng.integers(1, 8))
        v = rng.normal(0.7, 0.1, big)
        if rng.uniform() < 0.3:
            v[: big // 2] = v[0]  # ties
        for n in range(1, big + 1):
            subsets = [max(c) for c in itertools.combinations(v, n)]
            assert expected_max(v, n) == pytest.approx(np.mean(subsets), abs=1e-12)
            tuples = [max(c) for c in itertools.product(v, repeat=n)] if big ** n <= 5000 else None
            if tuples:
                assert expected_max(v, n, replacement=True) == pytest.approx(np.mean(tuples), abs=1e-12)
    with pytest.raises(ValueError, match="n <= the 2 trials"):
        expected_max([0.1, 0.2], 3)
