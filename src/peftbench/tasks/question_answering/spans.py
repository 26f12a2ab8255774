"""Span QA predictions: the best answer span of an example over all its windows."""
from __future__ import annotations

import numpy as np


def best_span(windows: list[dict], context: str, n_best: int, max_answer_length: int,
              unanswerable: bool) -> tuple[str, float, float]:
    """(answer text, its score, the null score) from windows' start / end scores: the best of the ``n_best``
    starts x ends no longer than ``max_answer_length`` tokens; "" when unanswerable questions exist and the
    null answer (first token) scores higher."""
    best_text, best, null = "", -np.inf, np.inf
    for w in windows:
        s, e, offs = w["start"], w["end"], w["offsets"]
        n = min(len(offs), len(s))  # logits cover padding too; offsets cover the window's real tokens
        s, e = s[:n], e[:n]
        null = min(null, float(s[0] + e[0]))
        for i in np.argsort(s)[::-1][:n_best]:
            if offs[i][0] < 0:
                continue
            for j in np.argsort(e)[::-1][:n_best]:
                if offs[j][0] < 0 or j < i or j - i + 1 > max_answer_length:
                    continue
                if s[i] + e[j] > best:
                    best, best_text = float(s[i] + e[j]), context[offs[i][0]:offs[j][1]]
    if unanswerable and (null > best or not np.isfinite(best)):
        return "", float(best) if np.isfinite(best) else 0.0, float(null)
    return best_text, float(best) if np.isfinite(best) else 0.0, float(null) if np.isfinite(null) else 0.0


def join_windows(predictions: list[dict], examples: list[dict], n_best: int, max_answer_length: int,
                 unanswerable: bool) -> tuple[list[dict], list[list[str]]]:
    """Per-window predictions -> one prediction and the gold answers per example."""
    by_example: dict[int, list] = {}
    for p in predictions:
        by_example.setdefault(p["_example"], []).append(p)
    preds, refs = [], []
    for ex_idx, ex in enumerate(examples):
        windows = by_example.get(ex_idx, [])
        text, score, null = best_span(windows, ex["context"], n_best, max_answer_length, unanswerable)
        pred = {"id": ex["id"], "prediction": text, "score": round(score, 4), "null_score": round(null, 4)}
        for key in ("group", "cluster"):
            if windows and key in windows[0]:
                pred[key] = windows[0][key]
        preds.append(pred)
        refs.append(list(ex["answers"]))
    return preds, refs
