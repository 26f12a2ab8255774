"""The seed-aware verdicts' calibration, full table (the seeded CI subset is tests/test_calibration.py).

    python bench/verdict_calibration.py [--reps 2000] [--legacy-reps 500] [--out docs/statistics.md]

Two parts, both written into docs/statistics.md between its ``<!-- calibration -->`` markers:

1. Simulated studies (tests/calibration.py's generating models: ``logistic``, where seeds disagree on about a
   third of the examples, and ``threshold``, where they agree on ~94%), k = 3, 5, 10 seeds, seed sd 1, 2, 4
   points, true difference 0 and 5 points, 500 test examples: coverage of the 95% interval, the rate of better /
   worse verdicts (the error rate at 0, the power at 5), "equivalent" at a true difference equal to the margin,
   Holm's family-wise error over 10 null comparisons sharing a baseline -- for ``seed_aware_test`` and, on the same
   studies, the percentile two-stage bootstrap that shipped until b675069.
2. The exact error rate in the normal limit (per-seed differences normal, the example part known): the pivot
   against a Satterthwaite t on the same variance, at alpha = 0.05 and at 0.005 (the level Holm applies first
   over 10 comparisons), for seed shares rho of the variance from 0.05 to 0.99.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from calibration import Design, run_cell  # noqa: E402


def simulated(reps: int, legacy_reps: int) -> list[str]:
    rows = ["| model | seeds | seed sd | Δ | coverage | better / worse | old coverage | old better / worse |",
            "|---|---|---|---|---|---|---|---|"]
    for model in ("logistic", "threshold"):
        for k in (3, 5, 10):
            for sd in (1, 2, 4):
                for delta in (0.0, 5.0):
                    d = Design(model, k, sd, delta=delta)
                    new = run_cell(d, reps, seed=1000 + k * 10 + sd + int(delta))
                    old = run_cell(d, legacy_reps, seed=2000 + k * 10 + sd + int(delta), with_legacy=True)
                    rows.append(f"| {model} | {k} | {sd} | {delta:g} | {new.coverage:.3f} | {new.false_positive:.3f} | "
                                f"{old.legacy_coverage:.3f} | {old.legacy_rejects:.3f} |")
                    print(rows[-1], flush=True)
    return rows


def equivalence_and_familywise(reps: int) -> list[str]:
    rows = ["| model | seeds | seed sd | 'equivalent' at Δ = margin (2 points) | Holm family-wise error, 10 null comparisons |",
            "|---|---|---|---|---|"]
    for model in ("logistic", "threshold"):
        for k in (3, 5, 10):
            eq = run_cell(Design(model, k, 2, delta=2.0), reps, seed=3000 + k)
            fw = run_cell(Design(model, k, 4, methods=10), max(reps // 4, 200), seed=4000 + k)
            rows.append(f"| {model} | {k} | 2 (TOST), 4 (Holm) | {eq.equivalent:.3f} | {fw.familywise:.3f} |")
            print(rows[-1], flush=True)
    return rows


def exact(ks=(3, 4, 5, 10), rhos=(0.05, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)) -> list[str]:
    """Error rate / alpha of the pivot and of Satterthwaite's t, integrating over S^2's chi-square (the per-seed
    part rho W with W ~ chi2(k-1)/(k-1), the example part 1 - rho known, the true variance 1)."""
    from scipy import stats
    from scipy.optimize import brentq

    def pivot_q(k, alpha, r, grid):
        sd = np.sqrt(r / grid + 1 - r)
        return brentq(lambda x: np.mean(2 * stats.norm.sf(x / sd)) - alpha, 0.1, 1e5)

    rows = ["| seeds | α | rule | " + " | ".join(f"ρ {r:g}" for r in rhos) + " |",
            "|---|---|---|" + "---|" * len(rhos)]
    for k in ks:
        grid = stats.chi2.ppf((np.arange(400) + 0.5) / 400, k - 1) / (k - 1)
        w = stats.chi2.ppf((np.arange(4000) + 0.5) / 4000, k - 1) / (k - 1)
        for alpha in (0.05, 0.005):
            table_r = np.linspace(0, 1, 201)
            table_q = np.array([pivot_q(k, alpha, r, grid) for r in table_r])
            for rule in ("pivot", "Satterthwaite"):
                cells = []
                for rho in rhos:
                    a, b = rho * w, 1 - rho
                    r = a / (a + b)
                    if rule == "pivot":
                        q = np.interp(r, table_r, table_q)
                    else:
                        q = stats.t.ppf(1 - alpha / 2, (k - 1) / np.maximum(r, 1e-12) ** 2)
                    cells.append((2 * stats.norm.sf(q * np.sqrt(a + b))).mean() / alpha)
                rows.append(f"| {k} | {alpha:g} | {rule} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--legacy-reps", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "docs" / "statistics.md"))
    ap.add_argument("--exact-only", action="store_true")
    args = ap.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    parts = ["### Exact error rate in the normal limit (rate / α)", "", *exact(), ""]
    if not args.exact_only:
        parts = [f"### Simulated studies ({args.reps} per cell; the old procedure on {args.legacy_reps} of its own, "
                 "1,000 resamples each)", "", *simulated(args.reps, args.legacy_reps), "",
                 f"### Equivalence at the margin and Holm over 10 comparisons ({args.reps} / "
                 f"{max(args.reps // 4, 200)} studies a cell)", "", *equivalence_and_familywise(args.reps), "", *parts]
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    parts.append(f"Generated by `python bench/verdict_calibration.py --reps {args.reps} --legacy-reps "
                 f"{args.legacy_reps}` in {wall / 60:.1f} min wall, {used / 60:.1f} min CPU, one process.")
    out = Path(args.out)
    text = out.read_text(encoding="utf-8")
    block = "<!-- calibration -->\n" + "\n".join(parts) + "\n<!-- /calibration -->"
    text = re.sub(r"<!-- calibration -->.*<!-- /calibration -->", lambda _: block, text, flags=re.S)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
