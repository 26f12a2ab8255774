"""Extractive span QA (SQuAD 1.1 / 2.0 style, ParsiNLU reading comprehension) for every architecture.

Data (``data.options.context`` / ``question`` / ``answers`` name the columns; by default ``context`` or
``passage``, ``question``, ``answers``):
  * SQuAD columns: ``answers: {"text": [...], "answer_start": [...]}`` (hub ``squad``, ``squad_v2``);
  * SQuAD JSON files (``{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}``), read as is;
  * ParsiNLU jsonl: ``answers: [[start, text], ...]``;
  * answers as text only (a string or a list of strings): located in the context (first occurrence);
    how many could not be located is reported, and those rows are kept for evaluation but not trained on.
An empty answer list is an unanswerable question (SQuAD 2.0): the model learns to point at the first
token, and at prediction time answers "" when that null score beats the best span.

Long contexts are split into windows (``doc_stride``, default 128 tokens of overlap); predictions join a
context's windows and take the best of ``n_best`` (20) start/end candidates no longer than
``max_answer_length`` (30) tokens.

Metrics: exact match and token F1 (the official SQuAD formula: maximum over gold answers) after a
normalisation that also handles Persian (Arabic yeh/kaf to Persian, ZWNJ, diacritics and tatweel removed,
Persian/Arabic digits to ASCII, all Unicode punctuation removed, English articles removed), and ROUGE-1/2/L
F1 (rouge-score) on the same normalised tokens -- the Persian study's ROUGE.
"""
from __future__ import annotations

from typing import Optional

from ...options import Options

from ...data.loading import load_raw
from ...families import Head, HeadKind
from ..base import (Metric, Prepared, Raw, Task, carry_group, cross_entropy, map_splits, require_columns,
                    right_padding_collator, with_group)
from .metrics import exact_match, normalize_answer, qa_example_scores, qa_metrics, token_f1
from .readers import parse_answers, qa_reader
from .spans import best_span, join_windows
from .windows import window_encoder


def passage_id(context: str) -> str:
    """The cluster of a question: its passage (questions on one passage are resampled together)."""
    import hashlib

    return hashlib.sha1(context.encode("utf-8")).hexdigest()[:12]


class QuestionAnsweringOptions(Options):
    context: Optional[str] = None  # column names; default: context (or passage), question, answers
    question: str = "question"
    answers: str = "answers"
    doc_stride: int = 128  # overlap between windows of a long context, in tokens
    max_answer_length: int = 30
    n_best: int = 20
    unanswerable: Optional[bool] = None  # default: true when a train row has no answer (SQuAD 2.0)


class QuestionAnswering(Task):
    name = "question_answering"
    head_kind = HeadKind.SPAN
    Options = QuestionAnsweringOptions
    default_metric = "f1"
    metrics = Metric.many("exact_match", "f1", "rouge1", "rouge2", "rougeL", percent=True, per_example=True)
    pes_weights = {"f1": 3.0, "rougeL": 2.0, "exact_match": 5.0}  # Persian study, QA

    def load(self) -> Raw:
        from datasets import Dataset

        o = self.options
        dd, report = load_raw(self.spec.data, reader=qa_reader)
        cols = dd["train"].column_names
        ccol = o.context or ("context" if "context" in cols else "passage")
        require_columns(self.spec.name, dd, [ccol, o.question, o.answers], "set data.options.context / question / answers")
        unlocated: dict[str, int] = {}
        for split in list(dd):
            rows, lost = [], 0
            for i, r in enumerate(dd[split]):
                texts, starts = parse_answers(r[o.answers], r[ccol])
                lost += sum(s < 0 for s in starts)
                row = carry_group(r, {"_id": str(r.get("id", i)), "_context": r[ccol], "_question": r[o.question],
                                      "_answers": texts, "_starts": starts})
                row.setdefault("_cluster", passage_id(r[ccol]))  # questions on one passage are not independent
                rows.append(row)
            if lost:
                unlocated[split] = lost
            dd[split] = Dataset.from_list(rows)
        if unlocated:
            report["answers_not_located"] = unlocated
        unanswerable = o.unanswerable if o.unanswerable is not None else any(not a for a in dd["train"]["_answers"])
        report.update(unanswerable=unanswerable, rows={k: len(v) for k, v in dd.items()},
                      no_answer_rows={k: sum(not a for a in v["_answers"]) for k, v in dd.items()})
        return Raw(dd, ("start", "end"), report)

    def prepare(self, raw, tokenizer, arch, max_length, cache=None) -> Prepared:
        if not tokenizer.is_fast:
            raise ValueError("span QA needs a fast tokenizer (offset mappings); this model's tokenizer is slow")
        unanswerable = raw.report["unanswerable"]
        encode = window_encoder(tokenizer, max_length, min(self.options.doc_stride, max_length // 2), unanswerable)
        examples = {split: tuple({"id": i, "context": c, "answers": a}
                                 for i, c, a in zip(ds["_id"], ds["_context"], ds["_answers"]))
                    for split, ds in raw.splits.items()}
        feats = map_splits(raw.splits, encode, "windows", cache, with_indices=True)
        feats["train"] = feats["train"].filter(lambda k: k, input_columns="_keep")
        feats = {split: f.remove_columns("_keep") for split, f in feats.items()}
        return Prepared(feats, right_padding_collator(tokenizer), Head(self.head_kind, labels=raw.labels), raw.labels, tokenizer, arch,
                        extra={"examples": examples, "unanswerable": unanswerable})

    def loss(self, outputs, batch, prep):
        return (cross_entropy(outputs.start_logits, batch["start_positions"]) +
                cross_entropy(outputs.end_logits, batch["end_positions"])) / 2

    def decode(self, outputs, batch, prep, adapter):
        starts = outputs.start_logits.float().cpu().numpy()
        ends = outputs.end_logits.float().cpu().numpy()
        return [with_group({"_example": ex, "start": s, "end": e, "offsets": offs}, batch, i)
                for i, (ex, s, e, offs) in enumerate(zip(batch["_example"], starts, ends, batch["_offsets"]))]

    def references(self, batch):
        return list(batch["_example"])

    def finalize(self, prep, split, predictions, references, calibration=None):
        preds, refs = join_windows(predictions, prep.extra["examples"][split], self.options.n_best,
                                   self.options.max_answer_length, prep.extra["unanswerable"])
        return preds, refs, {}

    def compute_metrics(self, prep, predictions, references, calibration=None):
        return qa_metrics([p["prediction"] for p in predictions], references)

    def example_scores(self, predictions, references) -> dict[str, list[float]]:
        """Per-example scores whose mean is each metric (the paired bootstrap resamples them)."""
        return qa_example_scores([p["prediction"] for p in predictions], references)


__all__ = ["QuestionAnswering", "qa_metrics", "exact_match", "token_f1", "normalize_answer", "best_span", "qa_reader"]
