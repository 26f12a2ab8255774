"""The Performance-Efficiency Score of the Persian study (eq. 1), as published, and a variant that is
defined everywhere.

    PES = Σ_i W_i·M_i / (ln P · ln V · Σ_i W_i)

P: the model's parameters in millions (the study counts the whole model: 177 for mBERT + LoRA), V: peak
memory in GB (the study's GPU memory), M_i: metrics on a 0-1 scale, W_i: the weights below.  A check value
computed from the study's inputs (the study prints no PES number itself): BERT + LoRA sentiment, P = 177,
V = 3.50, accuracy 0.8485, F1 0.8407, precision 0.8865, recall 0.7994, equal weights -> 0.1301.

The published formula is undefined at P = 1 or V = 1 and changes sign below (small models, CPU runs,
memory deltas under 1 GB): there it is reported as undefined, with the reason.  The variant replaces
ln x by ln(e + x): equal to 1 at x = 0, positive and increasing everywhere.  It is close to ln x for P in the
hundreds of millions (ln(e + 177) = 5.19 against ln 177 = 5.18) but not for V of a few GB (ln(e + 3.5) = 1.83
against ln 3.5 = 1.25), so variant values are not comparable with published ones: it orders methods where the
published formula cannot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# The weights are each task type's ``pes_weights`` (the study's for sentiment, NER and QA), or a task's own
# ``tasks[].pes_weights``; ``percent``: the metrics its task declares on a 0-100 scale (read divided by 100).


@dataclass(frozen=True)
class PES:
    value: float | None  # the published formula; None where it is undefined
    variant: float | None  # ln(e + x) in place of ln x
    reason: str | None = None  # why the published value is undefined
    weighted_metric: float | None = None  # Σ W M / Σ W on the 0-1 scale


def weighted_metric(metrics: dict, weights: dict, percent: frozenset = frozenset()) -> float | None:
    used = {k: w for k, w in weights.items() if metrics.get(k) is not None}
    if not used or len(used) < len(weights):
        return None
    total = sum(w * metrics[k] / (100.0 if k in percent else 1.0) for k, w in used.items())
    return total / sum(used.values())


def published(score: float, params_millions: float, memory_gb: float) -> float:
    """Eq. 1 as published (P, V > 1)."""
    return score / (math.log(params_millions) * math.log(memory_gb))


def variant(score: float, params_millions: float, memory_gb: float) -> float:
    """ln(e + x) in place of ln x: defined for every P, V >= 0."""
    return score / (math.log(math.e + max(params_millions, 0.0)) * math.log(math.e + max(memory_gb, 0.0)))


def pes(metrics: dict, weights: dict, params_millions: float | None, memory_gb: float | None,
        percent: frozenset = frozenset()) -> PES:
    """``percent``: the metrics on a 0-100 scale (the task's declaration), read divided by 100."""
    score = weighted_metric(metrics, weights, percent)
    if score is None:
        missing = sorted(k for k in weights if metrics.get(k) is None)
        return PES(None, None, f"metric(s) {missing} not measured", None)
    if params_millions is None or memory_gb is None:
        return PES(None, None, "parameters or peak memory not measured", score)
    params_millions, memory_gb = max(params_millions, 0.0), max(memory_gb, 0.0)
    everywhere = variant(score, params_millions, memory_gb)
    reasons = ["P ≤ 1M" if params_millions <= 1 else "", "V ≤ 1 GB" if memory_gb <= 1 else ""]
    reason = " and ".join(r for r in reasons if r)
    if reason:
        return PES(None, everywhere, f"undefined: {reason} (ln ≤ 0)", score)
    return PES(published(score, params_millions, memory_gb), everywhere, None, score)


MEMORY_FLOOR_GB = math.e  # below it |d ln PES / d ln V| = 1 / ln V > 1: PES amplifies memory error
FLIP_FRACTION = 0.05


def pes_flags(points: list[tuple[float | None, float | None, float | None]],
              fraction: float = FLIP_FRACTION) -> list[list[str]]:
    """Per method (weighted metric, P in millions, V in GB): the reasons its PES should not be read as a
    ranking of methods. "V < e GB" where the published PES is oversensitive to memory; "ranking flips" where
    raising one method's V by ``fraction`` and lowering another's by as much reverses their order (checked on
    the published PES where every method has one, else on the variant)."""
    defined = all(m is not None and p and p > 1 and v and v > 1 for m, p, v in points)
    score, which = (published, "published") if defined else (variant, "variant")
    flags: list[list[str]] = [[] for _ in points]
    for i, (m, p, v) in enumerate(points):
        if v is not None and v < MEMORY_FLOOR_GB:
            flags[i].append(f"V < e GB ({v:.2f}): dominated by ln V")
    for i, (mi, pi, vi) in enumerate(points):
        for j, (mj, pj, vj) in enumerate(points):
            if i == j or None in (mi, pi, vi, mj, pj, vj):
                continue
            if score(mi, pi, vi) > score(mj, pj, vj) and \
                    score(mi, pi, vi * (1 + fraction)) < score(mj, pj, vj * (1 - fraction)):
                for k in (i, j):
                    note = f"ranking flips under ±{fraction:.0%} memory ({which})"
                    if note not in flags[k]:
                        flags[k].append(note)
    return flags
