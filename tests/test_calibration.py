"""The seed-aware verdicts keep their promise: simulated crossed designs with a known true difference
(tests/calibration.py: a logistic model where seeds disagree on about a third of the examples, a threshold model
where they agree on ~94%), scored by the project's own ``seed_aware_test``. Seeded and small enough for CI; the
full table (every k, seed sd and delta, with the old procedure beside it) is bench/verdict_calibration.py's, in
docs/statistics.md.

Acceptance (issue 30): coverage of the 95% interval within 93-97% (up to 98% at 3 seeds: see ``upper``) and a
single null comparison's false-positive rate <= 6% in every cell; Holm's family-wise error over 10 null comparisons <= 6%; TOST calls "equivalent" at
most 5% of the time at delta = margin; clusters resampled as clusters cover where rows resampled one by one do
not."""
import numpy as np
import pytest

from calibration import Design, legacy, new_test, run_cell, simulate

NULL_CELLS = [Design(model, k, sd) for model in ("logistic", "threshold") for k, sd in
              ((3, 1), (3, 2), (3, 4), (5, 2), (10, 4))]


def upper(design: Design) -> float:
    """The coverage a cell may not exceed. 97% -- except at 3 seeds, where the pivot is conservative by design
    when seeds carry a third of the variance or so: exactly (normal components, bench/verdict_calibration.py
    --exact) its error is then 2.4% at worst, coverage 97.6%, and no rule that is valid at the 0.005 level Holm
    needs over 10 comparisons was found to do better (docs/statistics.md); 98% allows for that and Monte-Carlo
    error."""
    return 0.98 if design.seeds == 3 else 0.97


@pytest.mark.parametrize("design", NULL_CELLS, ids=lambda d: f"{d.model}-k{d.seeds}-sd{d.seed_sd:g}")
def test_coverage_and_false_positives_at_no_difference(design):
    cell = run_cell(design, reps=1200, seed=100 + design.seeds * 10 + int(design.seed_sd))
    assert 0.93 <= cell.coverage <= upper(design), cell
    assert cell.false_positive <= 0.06, cell


@pytest.mark.parametrize("model", ["logistic", "threshold"])
def test_coverage_at_a_real_difference(model):
    design = Design(model, 3, 2, delta=4.0)
    cell = run_cell(design, reps=800, seed=7)
    assert 0.93 <= cell.coverage <= upper(design), cell


def test_holm_over_ten_null_comparisons_keeps_the_familywise_error():
    """Ten methods that all equal the baseline (one shared baseline, as in a report), 3 seeds, seeds dominant."""
    cell = run_cell(Design("threshold", 3, 4, methods=10), reps=500, seed=11)
    assert cell.familywise <= 0.06, cell


def test_tost_is_calibrated_at_the_margin():
    """A true difference of exactly the margin (2 points): "equivalent" at most 5% of the time."""
    for model in ("logistic", "threshold"):
        cell = run_cell(Design(model, 5, 2, delta=2.0), reps=800, seed=13)
        assert cell.equivalent <= 0.05, cell


def test_the_old_procedure_calls_a_null_worse_where_the_new_one_does_not():
    """The percentile two-stage bootstrap that shipped until b675069, on the same simulated studies: at 3 seeds
    with seeds dominant it calls null differences better / worse far above 5%; on one such study it says
    "worse" (p < 0.05, difference < 0) and the calibrated test does not."""
    design = Design("threshold", 3, 4)
    rng = np.random.default_rng(3)
    found = None
    rejected = 0
    studies = simulate(design, 200, rng)
    for i, study in enumerate(studies):
        low, high, p, _ = legacy(study[1], study[0], None, resamples=1000, seed=i)
        rejected += p < 0.05
        if found is None and p < 0.05 and high < 0:
            found = (study, p)
    assert rejected / len(studies) > 0.10  # the audit's 12-17%
    study, p_old = found
    new = new_test(study[1], study[0], 0.02)
    assert p_old < 0.05 and new.p >= 0.05 and new.low < 0 < new.high


def test_clustered_examples_resampled_as_clusters_cover_and_rows_do_not():
    """Aligned translations: 200 sentences x 3 languages share how hard they are for each method. Treating the
    600 rows as independent gives an interval too narrow to cover; resampling the 200 clusters is wider and covers
    at the nominal rate."""
    design = Design("threshold", 5, 1, n=600, clusters=3)
    clusters = np.arange(600) // 3
    rng = np.random.default_rng(5)
    row_cover = cluster_cover = 0
    wider = []
    studies = simulate(design, 500, rng)
    for study in studies:
        rows = new_test(study[1], study[0], 0.02)
        grouped = new_test(study[1], study[0], 0.02, clusters)
        row_cover += rows.low <= 0 <= rows.high
        cluster_cover += grouped.low <= 0 <= grouped.high
        wider.append((grouped.high - grouped.low) / (rows.high - rows.low))
        assert grouped.n_clusters == 200
    assert np.mean(wider) > 1.2
    assert row_cover / len(studies) < 0.90
    assert 0.93 <= cluster_cover / len(studies) <= 0.97
