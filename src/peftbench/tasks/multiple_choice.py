"""Multiple choice (COPA, HuCoPA, Slovene COPA, XCOPA, ParsiNLU multiple choice) for every architecture.

Each (context, choice) pair is scored by a sequence-classification model with one output: the batch's
choices are flattened to ``(examples x choices, length)`` by the collator, the scores reshaped to
``(examples, choices)`` and trained with cross-entropy over the choices.  For encoders this is exactly
the standard multiple-choice head (pooler -> dropout -> linear to one score, as ``BertForMultipleChoice``;
a test checks the logits match); for decoders the score is read at the last token, for encoder-decoders
from the decoder (the head the Hungarian study wrote for GPT-NeoX / Llama).  Because the model only ever
sees flat (pair) inputs, every method works, prompt tuning included.  Examples may have different numbers
of choices (padded choices score -inf).

``data.options``:
  ``choices``: a column holding a list of choices, or a list of columns (default ``[choice1, choice2]``);
  ``question``: COPA's cause/effect column (default: ``question`` if present); it becomes a connective
  appended to the premise, from ``connectives`` ({cause: ..., effect: ...}) or the built-in table for
  ``language`` (en, hu, sl, fa, et, id, it, sw, tr, vi, zh, ...);
  ``label_base``: 0 (default) or 1 when answers are numbered from one (HuCoPA, ParsiNLU); the label may
  also be the answer text itself (``label_is_text: true``).
"""
from __future__ import annotations

from typing import Optional, Union

from ..options import Options

from ..data.loading import DataError, load_raw
from ..families import Head, HeadKind
from .base import Metric, MetaCollator, Prepared, Raw, WeightedTask, carry_group, cross_entropy, map_splits, model_inputs, \
    require_columns, with_group
from .classification import MACRO_NOTE, classification_metrics

CONNECTIVES = {  # COPA: "premise <connective> choice"
    "en": {"cause": "because", "effect": "so"},
    "hu": {"cause": "mert", "effect": "ezért"},
    "sl": {"cause": "ker", "effect": "zato"},
    "fa": {"cause": "زیرا", "effect": "بنابراین"},
    "et": {"cause": "sest", "effect": "seega"},
    "id": {"cause": "karena", "effect": "jadi"},
    "it": {"cause": "perché", "effect": "quindi"},
    "sw": {"cause": "kwa sababu", "effect": "kwa hiyo"},
    "tr": {"cause": "çünkü", "effect": "bu yüzden"},
    "vi": {"cause": "bởi vì", "effect": "vì vậy"},
    "zh": {"cause": "因为", "effect": "所以"},
    "th": {"cause": "เพราะ", "effect": "ดังนั้น"},
    "ta": {"cause": "ஏனெனில்", "effect": "எனவே"},
    "ht": {"cause": "paske", "effect": "donk"},
    "qu": {"cause": "imaraykuchus", "effect": "chayrayku"},
}
DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


class MultipleChoiceOptions(Options):
    choices: Union[str, list[str]] = ["choice1", "choice2"]  # a list column, or several columns
    question: Optional[str] = None  # COPA's cause / effect column (default: 'question' when present)
    connectives: Optional[dict[str, str]] = None  # {cause: ..., effect: ...}; default: the table for language
    language: str = "en"
    label_base: int = 0  # 1 when answers are numbered from one (HuCoPA, ParsiNLU)
    label_is_text: bool = False  # the label is the answer text itself


class MultipleChoice(WeightedTask):
    name = "multiple_choice"
    head_kind = HeadKind.SEQUENCE
    Options = MultipleChoiceOptions
    default_metric = "accuracy"
    metrics = (*Metric.many("accuracy", "macro_f1", confusion=True), Metric("mcc", confusion=True, bounds=(-1.0, 1.0)))
    pes_weights = {"accuracy": 1.0}

    def load(self) -> Raw:
        spec, o = self.spec.data, self.options
        dd, report = load_raw(spec)
        choices, qcol, base, is_text, lang = o.choices, o.question, o.label_base, o.label_is_text, o.language
        conn = o.connectives or CONNECTIVES.get(lang)
        cols = dd["train"].column_names
        if qcol is None and "question" in cols and spec.text != "question":
            qcol = "question"
        require_columns(self.spec.name, dd, [spec.text, spec.label] + ([choices] if isinstance(choices, str) else
                                                                      list(choices)) + ([qcol] if qcol else []),
                        "set data.text, data.label, data.options.choices / question")
        if qcol and conn is None:
            raise DataError(f"task '{self.spec.name}': no connectives for language '{lang}'; set data.options."
                            f"connectives: {{cause: ..., effect: ...}} (built in: {', '.join(CONNECTIVES)})")

        def convert(row):
            opts = list(row[choices]) if isinstance(choices, str) else [row[c] for c in choices]
            context = row[spec.text]
            if qcol:
                q = str(row[qcol]).strip().lower()
                if q not in conn:
                    raise DataError(f"task '{self.spec.name}': question value '{row[qcol]}' is not one of {list(conn)}")
                context = f"{context.rstrip()} {conn[q]}"
            raw = row[spec.label]
            if is_text:
                if raw not in opts:
                    raise DataError(f"task '{self.spec.name}': answer text '{str(raw)[:40]}' is not among the choices")
                answer = opts.index(raw)
            else:
                try:
                    answer = int(str(raw).strip().translate(DIGITS)) - base
                except ValueError:
                    raise DataError(f"task '{self.spec.name}': label '{raw}' is not a choice number; "
                                    "set data.options.label_is_text: true if it is the answer text") from None
                if not 0 <= answer < len(opts):
                    raise DataError(f"task '{self.spec.name}': label {raw} is out of range for {len(opts)} choices "
                                    f"(label_base={base}; set data.options.label_base)")
            return carry_group(row, {"_context": context, "_choices": [str(c) for c in opts], "_answer": answer})

        for split in dd:
            dd[split] = dd[split].map(convert, remove_columns=dd[split].column_names, desc=f"choices {split}")
        counts = sorted({len(c) for ds in dd.values() for c in ds["_choices"]})
        report.update(choices_per_example=counts, connectives=conn if qcol else None, rows={k: len(v) for k, v in dd.items()})
        return Raw(dd, tuple(f"choice{i + 1}" for i in range(max(counts))), report)

    def prepare(self, raw, tokenizer, arch, max_length, cache=None) -> Prepared:
        def encode(batch):
            firsts = [c for c, ch in zip(batch["_context"], batch["_choices"]) for _ in ch]
            seconds = [x for ch in batch["_choices"] for x in ch]
            enc = tokenizer(firsts, seconds, truncation="longest_first", max_length=max_length)
            out, i = {k: [] for k in enc}, 0
            for ch in batch["_choices"]:
                for k in enc:
                    out[k].append(enc[k][i:i + len(ch)])
                i += len(ch)
            out["labels"] = batch["_answer"]
            return carry_group(batch, out)

        # one score per (context, choice) pair: a sequence head with one output
        return Prepared(map_splits(raw.splits, encode, "tokenising", cache), ChoiceCollator(tokenizer),
                        Head(self.head_kind, num_outputs=1, pooling=self.pooling), raw.labels, tokenizer, arch)

    def forward(self, adapter, batch, prep):
        import torch
        from transformers.modeling_outputs import MultipleChoiceModelOutput

        counts = batch["_num_choices"]
        flat = adapter(model_inputs(batch)).logits.float().view(-1)
        scores = torch.full((len(counts), max(counts)), float("-inf"), device=flat.device)
        i = 0
        for row, c in enumerate(counts):
            scores[row, :c] = flat[i:i + c]
            i += c
        return MultipleChoiceModelOutput(logits=scores)

    def loss(self, outputs, batch, prep):
        return cross_entropy(outputs.logits, batch["labels"], prep.extra.get("class_weights"))

    def batch_size(self, batch):
        return len(batch["labels"])

    def decode(self, outputs, batch, prep, adapter):
        probs = outputs.logits.softmax(dim=-1)
        return [with_group({"pred": int(p.argmax()), "probs": [round(float(x), 5) for x in p[:c]]}, batch, i)
                for i, (p, c) in enumerate(zip(probs, batch["_num_choices"]))]

    def compute_metrics(self, prep, predictions, references, calibration=None):
        m = classification_metrics([p["pred"] for p in predictions], references)
        return {k: m[k] for k in self.metric_names}

    def metric_info(self, prep) -> dict:
        return {"macro": MACRO_NOTE}


class ChoiceCollator(MetaCollator):
    """(examples, choices, length) -> flat (examples * choices, length), padded; keeps the counts."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        pad = DataCollatorWithPadding(tokenizer)

        def flatten(features):
            import torch

            keys = [k for k in features[0] if k != "labels"]
            batch = pad([{k: f[k][j] for k in keys} for f in features for j in range(len(f["input_ids"]))])
            batch["labels"] = torch.tensor([f["labels"] for f in features])
            batch["_num_choices"] = [len(f["input_ids"]) for f in features]
            return batch

        super().__init__(flatten)
