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

import torch
from transformers import DataCollatorWithPadding
from transformers.modeling_outputs import MultipleChoiceModelOutput

from ..data.loading import DataError, load_raw
from .base import MetaCollator, Task, carry_group, model_inputs, with_group
from .classification import classification_metrics, sequence_classification_head

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


class MultipleChoice(Task):
    name = "multiple_choice"
    peft_task_type = "SEQ_CLS"
    default_metric = "accuracy"
    metric_names = ("accuracy", "macro_f1", "mcc")
    pes_weights = {"accuracy": 1.0}
    loss_outside_model = True

    def _opts(self):
        o = dict(self.spec.data.options)
        choices = o.get("choices", ["choice1", "choice2"])
        lang = o.get("language", "en")
        conn = o.get("connectives") or CONNECTIVES.get(lang)
        return choices, o.get("question"), conn, int(o.get("label_base", 0)), bool(o.get("label_is_text", False)), lang

    def load(self):
        spec = self.spec.data
        dd, report = load_raw(spec)
        choices, qcol, conn, base, is_text, lang = self._opts()
        cols = dd["train"].column_names
        if qcol is None and "question" in cols and spec.text != "question":
            qcol = "question"
        need = [spec.text, spec.label] + ([choices] if isinstance(choices, str) else list(choices)) + ([qcol] if qcol else [])
        missing = [c for c in need if c not in cols]
        if missing:
            raise DataError(f"task '{self.spec.name}': column(s) {missing} not in the data (columns: {', '.join(cols)}); "
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
            out = {"_context": context, "_choices": [str(c) for c in opts], "_answer": answer}
            if "_group" in row:
                out["_group"] = row["_group"]
            return out

        for split in dd:
            dd[split] = dd[split].map(convert, remove_columns=dd[split].column_names, desc=f"choices {split}")
        counts = sorted({len(c) for ds in dd.values() for c in ds["_choices"]})
        self.labels = [f"choice{i + 1}" for i in range(max(counts))]
        report.update(choices_per_example=counts, connectives=conn if qcol else None, rows={k: len(v) for k, v in dd.items()})
        return dd, report

    def auto_class(self, family, config):
        return sequence_classification_head(family, config)

    def config_updates(self):
        return {"num_labels": 1}

    def head_modules(self, model):
        return [n for n in ("classifier", "score", "classification_head") if hasattr(model, n)]

    def prepare(self, dd, tokenizer, max_length):
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

        return {s: ds.map(encode, batched=True, remove_columns=ds.column_names, desc=f"tokenising {s}")
                for s, ds in dd.items()}

    def collator(self, tokenizer):
        return ChoiceCollator(tokenizer)

    def forward(self, model, batch):
        counts = batch["_num_choices"]
        out = model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"})
        flat = out.logits.float().view(-1)
        scores = torch.full((len(counts), max(counts)), float("-inf"), device=flat.device)
        i = 0
        for row, c in enumerate(counts):
            scores[row, :c] = flat[i:i + c]
            i += c
        loss = torch.nn.functional.cross_entropy(scores, batch["labels"])
        return loss, MultipleChoiceModelOutput(loss=loss, logits=scores)

    def loss(self, outputs, batch):
        return outputs.loss

    def batch_size(self, batch):
        return len(batch["labels"])

    def decode(self, outputs, batch, model):
        probs = torch.softmax(outputs.logits, dim=-1)
        return [with_group({"pred": int(p.argmax()), "probs": [round(float(x), 5) for x in p[:c]]}, batch, i)
                for i, (p, c) in enumerate(zip(probs, batch["_num_choices"]))]

    def references(self, batch):
        return batch["labels"].tolist()

    def compute_metrics(self, predictions, references):
        m = classification_metrics([p["pred"] for p in predictions], references, len(self.labels))
        return {k: m[k] for k in self.metric_names}


class ChoiceCollator(MetaCollator):
    """(examples, choices, length) -> flat (examples * choices, length), padded; keeps the counts."""

    def __init__(self, tokenizer):
        pad = DataCollatorWithPadding(tokenizer)

        def flatten(features):
            keys = [k for k in features[0] if k != "labels"]
            batch = pad([{k: f[k][j] for k in keys} for f in features for j in range(len(f["input_ids"]))])
            batch["labels"] = torch.tensor([f["labels"] for f in features])
            batch["_num_choices"] = [len(f["input_ids"]) for f in features]
            return batch

        super().__init__(flatten)
