"""Span QA metrics: exact match and token F1 by the official SQuAD formula (maximum over gold answers), and
ROUGE-1/2/L F1 (rouge-score), all on answers normalised for Persian as well as English."""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

_CHAR_MAP = str.maketrans({"ي": "ی", "ى": "ی", "ئ": "ی", "ك": "ک", "ة": "ه", "ۀ": "ه", "أ": "ا", "إ": "ا",
                           "ٱ": "ا", "\u200c": " ", "\u200d": "", "\u200e": "", "\u200f": "", "ـ": "",
                           **{c: str(i) for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")},
                           **{c: str(i) for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")}})
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Arabic-script diacritics only (harakat, shadda, sukun, superscript alef, Quranic annotation marks): vowel
# signs and viramas of other scripts (Devanagari, Bengali, Thai, ...) are letters of the word and stay
_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed]")


def normalize_answer(s: str) -> str:
    """SQuAD's normalize_answer (lower case, no punctuation, no English articles, single spaces) extended
    for Persian: Arabic letter forms to Persian, ZWNJ to a space, diacritics and tatweel removed, Persian /
    Arabic digits to ASCII, every Unicode punctuation character removed. Combining marks of other scripts
    are kept."""
    s = _ARABIC_MARKS.sub("", unicodedata.normalize("NFC", s).translate(_CHAR_MAP).lower())
    s = "".join(c for c in s if not unicodedata.category(c).startswith("P") and c not in string.punctuation)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)  # SQuAD 2.0: both empty (no answer) scores 1
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


class _Tokens:
    """rouge-score tokenizer on the normalised text (its default drops non-ASCII, i.e. all of Persian)."""

    def tokenize(self, text):
        return normalize_answer(text).split()


def qa_example_scores(predictions: list[str], golds: list[list[str]]) -> dict[str, list[float]]:
    """Per example (0-100): exact match, token F1 and ROUGE-1/2/L F1, each the maximum over the gold answers; an
    unanswerable question (no gold answer) scores full marks for an empty prediction."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tokens())
    out: dict[str, list[float]] = {k: [] for k in ("exact_match", "f1", "rouge1", "rouge2", "rougeL")}
    for pred, gold in zip(predictions, golds):
        gold = gold or [""]  # unanswerable
        out["exact_match"].append(100 * max(exact_match(pred, g) for g in gold))
        out["f1"].append(100 * max(token_f1(pred, g) for g in gold))
        both_empty = not normalize_answer(pred) and not any(normalize_answer(g) for g in gold)
        for k in ("rouge1", "rouge2", "rougeL"):
            out[k].append(100.0 if both_empty else 100 * max(scorer.score(g, pred)[k].fmeasure for g in gold))
    return out


def qa_metrics(predictions: list[str], golds: list[list[str]]) -> dict:
    """Corpus scores (0-100): the mean of the per-example scores."""
    n = max(len(predictions), 1)
    return {k: sum(v) / n for k, v in qa_example_scores(predictions, golds).items()}
