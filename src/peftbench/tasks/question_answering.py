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

import json
import re
import string
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModelForQuestionAnswering
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from ..data.loading import DataError, load_raw
from .base import MetaCollator, Task, is_prompt_learning, model_inputs, with_group

# --------------------------------------------------------------------------- normalisation and metrics

_CHAR_MAP = str.maketrans({"ي": "ی", "ى": "ی", "ئ": "ی", "ك": "ک", "ة": "ه", "ۀ": "ه", "أ": "ا", "إ": "ا",
                           "ٱ": "ا", "\u200c": " ", "\u200d": "", "\u200e": "", "\u200f": "", "ـ": "",
                           **{c: str(i) for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")},
                           **{c: str(i) for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")}})
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD's normalize_answer (lower case, no punctuation, no English articles, single spaces) extended
    for Persian: Arabic letter forms to Persian, ZWNJ to a space, diacritics and tatweel removed, Persian /
    Arabic digits to ASCII, every Unicode punctuation character removed."""
    s = unicodedata.normalize("NFC", s).translate(_CHAR_MAP).lower()
    s = "".join(c for c in s if not unicodedata.category(c).startswith("P") and c not in string.punctuation
                and unicodedata.category(c) != "Mn")  # Mn: Arabic harakat, shadda, superscript alef ...
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


def qa_metrics(predictions: list[str], golds: list[list[str]]) -> dict:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tokens())
    em = f1 = 0.0
    rouge = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, gold in zip(predictions, golds):
        gold = gold or [""]  # unanswerable
        em += max(exact_match(pred, g) for g in gold)
        f1 += max(token_f1(pred, g) for g in gold)
        for k in rouge:
            if not normalize_answer(pred) and not any(normalize_answer(g) for g in gold):
                rouge[k] += 1.0
            else:
                rouge[k] += max(scorer.score(g, pred)[k].fmeasure for g in gold)
    n = max(len(predictions), 1)
    return {"exact_match": 100 * em / n, "f1": 100 * f1 / n, **{k: 100 * v / n for k, v in rouge.items()}}


# --------------------------------------------------------------------------- the task


def _read_squad_json(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                rows.append({"id": str(qa.get("id", len(rows))), "context": para["context"], "question": qa["question"],
                             "answers": {"text": [a["text"] for a in answers],
                                         "answer_start": [a["answer_start"] for a in answers]}})
    return rows


def qa_reader(path: Path):
    """load_raw's reader: SQuAD JSON (nested) and JSON lines read with Python's json, so that answer lists
    mixing offsets and text (ParsiNLU's ``[[start, text]]``) reach the task intact (Arrow would reject them)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            head = f.read(200).lstrip()
        if head.startswith("{") and '"data"' in head:
            return Dataset.from_list(_read_squad_json(path))
        return None
    if suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        r = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                    r["answers"] = _as_squad(r.get("answers"), r.get("passage", r.get("context", "")))
                    # other fields may mix types across rows (a number here, a string there): keep them as text
                    rows.append({k: v if k == "answers" or v is None or isinstance(v, str) else
                                 json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else str(v)
                                 for k, v in r.items()})
        return Dataset.from_list(rows)
    return None


def _as_squad(raw, context) -> dict:
    texts, starts = _answers(raw, context)
    return {"text": texts, "answer_start": starts}


class QuestionAnswering(Task):
    name = "question_answering"
    peft_task_type = "QUESTION_ANS"
    default_metric = "f1"
    metric_names = ("exact_match", "f1", "rouge1", "rouge2", "rougeL")
    pes_weights = {"exact_match": 2.5, "f1": 2.5, "rouge1": 2.5, "rougeL": 2.5}

    def __init__(self, spec):
        super().__init__(spec)
        o = spec.data.options
        self.doc_stride = int(o.get("doc_stride", 128))
        self.max_answer_length = int(o.get("max_answer_length", 30))
        self.n_best = int(o.get("n_best", 20))
        self.examples: dict[str, list] = {}
        self.unanswerable = False

    def load(self):
        spec = self.spec.data
        dd, report = load_raw(spec, reader=qa_reader)
        cols = dd["train"].column_names
        o = spec.options
        ccol = o.get("context") or ("context" if "context" in cols else "passage")
        qcol = o.get("question", "question")
        acol = o.get("answers", "answers")
        missing = [c for c in (ccol, qcol, acol) if c not in cols]
        if missing:
            raise DataError(f"task '{self.spec.name}': column(s) {missing} not in the data (columns: {', '.join(cols)}); "
                            "set data.options.context / question / answers")
        unlocated: dict[str, int] = {}
        for split in list(dd):
            rows, lost = [], 0
            for i, r in enumerate(dd[split]):
                texts, starts = _answers(r[acol], r[ccol])
                lost += sum(s < 0 for s in starts)
                row = {"_id": str(r.get("id", i)), "_context": r[ccol], "_question": r[qcol], "_answers": texts,
                       "_starts": starts}
                if "_group" in r:
                    row["_group"] = r["_group"]
                rows.append(row)
            if lost:
                unlocated[split] = lost
            dd[split] = Dataset.from_list(rows)
        if unlocated:
            report["answers_not_located"] = unlocated
        self.unanswerable = bool(o.get("unanswerable", any(not a for a in dd["train"]["_answers"])))
        report.update(unanswerable=self.unanswerable, rows={k: len(v) for k, v in dd.items()},
                      no_answer_rows={k: sum(not a for a in v["_answers"]) for k, v in dd.items()})
        self.labels = ["start", "end"]
        return dd, report

    def auto_class(self, family, config):
        if config.model_type == "encoder-decoder":
            from ..heads import EncoderDecoderForQuestionAnswering

            return EncoderDecoderForQuestionAnswering
        return AutoModelForQuestionAnswering

    def head_modules(self, model):
        return [n for n in ("qa_outputs",) if hasattr(model, n)]

    def prepare(self, dd, tokenizer, max_length):
        if not tokenizer.is_fast:
            raise ValueError("span QA needs a fast tokenizer (offset mappings); this model's tokenizer is slow")
        stride = min(self.doc_stride, max_length // 2)
        feats = {}
        for split, ds in dd.items():
            self.examples[split] = [{"id": i, "context": c, "answers": a} for i, c, a in
                                    zip(ds["_id"], ds["_context"], ds["_answers"])]
            train = split == "train"

            def encode(batch, idx):
                enc = tokenizer([q.strip() for q in batch["_question"]], batch["_context"], truncation="only_second",
                                max_length=max_length, stride=stride, return_overflowing_tokens=True,
                                return_offsets_mapping=True)
                mapping = enc.pop("overflow_to_sample_mapping")
                offsets = enc.pop("offset_mapping")
                out = {k: v for k, v in enc.items()}
                out.update(start_positions=[], end_positions=[], _example=[], _offsets=[], _keep=[])
                if "_group" in batch:
                    out["_group"] = []
                for f, ex in enumerate(mapping):
                    seq = enc.sequence_ids(f)
                    offs = [list(o) if s == 1 else [-1, -1] for o, s in zip(offsets[f], seq)]
                    ctx_idx = [j for j, s in enumerate(seq) if s == 1]
                    s_pos = e_pos = 0
                    keep = True
                    starts, texts = batch["_starts"][ex], batch["_answers"][ex]
                    located = [(s, t) for s, t in zip(starts, texts) if s >= 0]
                    if located:
                        a_start, text = located[0]
                        a_end = a_start + len(text)
                        if ctx_idx and offs[ctx_idx[0]][0] <= a_start and offs[ctx_idx[-1]][1] >= a_end:
                            s_pos = next(j for j in ctx_idx if offs[j][1] > a_start)
                            e_pos = next(j for j in reversed(ctx_idx) if offs[j][0] < a_end)
                        elif not self.unanswerable:
                            keep = False  # window without the answer: SQuAD 1.1 trains only on windows holding it
                    elif texts:
                        keep = False  # answer could not be located: evaluation only
                    out["start_positions"].append(s_pos)
                    out["end_positions"].append(e_pos)
                    out["_example"].append(idx[ex])
                    out["_offsets"].append(offs)
                    out["_keep"].append(keep)
                    if "_group" in batch:
                        out["_group"].append(batch["_group"][ex])
                return out

            f = ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names,
                       desc=f"windows {split}")
            if train:
                f = f.filter(lambda k: k, input_columns="_keep")
            feats[split] = f.remove_columns("_keep")
        return feats

    def collator(self, tokenizer):
        return qa_collator(tokenizer)

    def forward(self, model, batch):
        inputs = model_inputs(batch)
        if not is_prompt_learning(model):
            out = model(**inputs)
            return out.loss, out
        starts, ends = inputs.pop("start_positions"), inputs.pop("end_positions")
        base = model.get_base_model()
        if getattr(base.config, "is_encoder_decoder", False) and hasattr(base, "_shift_right"):
            # T5ForQuestionAnswering reads the decoder, fed the shifted input_ids, which peft withholds
            inputs["decoder_input_ids"] = base._shift_right(inputs["input_ids"])
        out = model(**inputs)
        width = batch["input_ids"].shape[1]  # drop the virtual tokens' positions (prepended)
        out = QuestionAnsweringModelOutput(start_logits=out.start_logits[:, -width:], end_logits=out.end_logits[:, -width:])
        out.loss = self.loss(out, {"start_positions": starts, "end_positions": ends})
        return out.loss, out

    def loss(self, outputs, batch):
        ce = torch.nn.functional.cross_entropy
        return (ce(outputs.start_logits.float(), batch["start_positions"]) +
                ce(outputs.end_logits.float(), batch["end_positions"])) / 2

    def decode(self, outputs, batch, model):
        starts = outputs.start_logits.float().cpu().numpy()
        ends = outputs.end_logits.float().cpu().numpy()
        return [with_group({"_example": ex, "start": s, "end": e, "offsets": offs}, batch, i)
                for i, (ex, s, e, offs) in enumerate(zip(batch["_example"], starts, ends, batch["_offsets"]))]

    def references(self, batch):
        return list(batch["_example"])

    def finalize(self, split, predictions, references):
        by_example: dict[int, list] = {}
        for p in predictions:
            by_example.setdefault(p["_example"], []).append(p)
        preds, refs = [], []
        for ex_idx, ex in enumerate(self.examples[split]):
            windows = by_example.get(ex_idx, [])
            text, score, null = self._best_span(windows, ex["context"])
            pred = {"id": ex["id"], "prediction": text, "score": round(score, 4), "null_score": round(null, 4)}
            if windows and "group" in windows[0]:
                pred["group"] = windows[0]["group"]
            preds.append(pred)
            refs.append(list(ex["answers"]))
        return preds, refs

    def _best_span(self, windows, context):
        best_text, best, null = "", -np.inf, np.inf
        for w in windows:
            s, e, offs = w["start"], w["end"], w["offsets"]
            n = min(len(offs), len(s))  # logits cover padding too; offsets cover the window's real tokens
            s, e = s[:n], e[:n]
            null = min(null, float(s[0] + e[0]))
            for i in np.argsort(s)[::-1][: self.n_best]:
                if offs[i][0] < 0:
                    continue
                for j in np.argsort(e)[::-1][: self.n_best]:
                    if offs[j][0] < 0 or j < i or j - i + 1 > self.max_answer_length:
                        continue
                    if s[i] + e[j] > best:
                        best, best_text = float(s[i] + e[j]), context[offs[i][0]:offs[j][1]]
        if self.unanswerable and (null > best or not np.isfinite(best)):
            return "", float(best) if np.isfinite(best) else 0.0, float(null)
        return best_text, float(best) if np.isfinite(best) else 0.0, float(null) if np.isfinite(null) else 0.0

    def compute_metrics(self, predictions, references):
        return qa_metrics([p["prediction"] for p in predictions], references)


def qa_collator(tokenizer):
    """Right padding whatever the tokenizer's side, so start/end positions index the padded batch."""

    def collate(features):
        keys = [k for k in features[0] if k not in ("start_positions", "end_positions")]
        batch = tokenizer.pad([{k: f[k] for k in keys} for f in features], return_tensors="pt", padding_side="right")
        batch["start_positions"] = torch.tensor([f["start_positions"] for f in features])
        batch["end_positions"] = torch.tensor([f["end_positions"] for f in features])
        return batch

    return MetaCollator(collate)


def _answers(raw, context: str) -> tuple[list[str], list[int]]:
    """Any supported answer layout -> (texts, character starts; -1 where the text is not in the context)."""
    if raw is None:
        return [], []
    if isinstance(raw, dict):  # SQuAD columns
        texts = list(raw.get("text") or [])
        starts = list(raw.get("answer_start") or [-2] * len(texts))
    elif isinstance(raw, str):
        texts, starts = ([raw] if raw.strip() else []), [-2] * bool(raw.strip())
    else:  # list of [start, text] pairs (ParsiNLU) or of strings
        texts, starts = [], []
        for a in raw:
            if isinstance(a, (list, tuple)) and len(a) == 2:
                st, tx = (a[0], a[1]) if isinstance(a[1], str) else (a[1], a[0])
                texts.append(str(tx))
                starts.append(int(st))
            else:
                texts.append(str(a))
                starts.append(-2)
    fixed = []
    for t, s in zip(texts, starts):
        if s >= 0 and context[s:s + len(t)] == t:
            fixed.append(s)
        else:  # text only, or a wrong offset: locate the text
            fixed.append(context.find(t) if t else -1)
    return texts, fixed
