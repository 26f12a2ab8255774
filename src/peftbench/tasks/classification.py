"""Sequence classification: binary or multi-class, single text or text pair.

Metrics: accuracy, macro precision / recall / F1, MCC (scikit-learn).
"""
from __future__ import annotations

import torch
from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_recall_fscore_support
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from ..data.loading import DataError, load_raw
from .base import MetaCollator, Task, carry_group, softmax_list, with_group


def classification_metrics(preds, refs, num_labels: int) -> dict:
    labels = list(range(num_labels))
    p, r, f, _ = precision_recall_fscore_support(refs, preds, labels=labels, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(refs, preds)), "macro_precision": float(p), "macro_recall": float(r),
            "macro_f1": float(f), "mcc": float(matthews_corrcoef(refs, preds))}


def sequence_classification_head(family: str, config):
    if config.model_type == "encoder-decoder":  # generic EncoderDecoderModel: transformers has no head
        from ..heads import EncoderDecoderForSequenceClassification

        return EncoderDecoderForSequenceClassification
    return AutoModelForSequenceClassification


class Classification(Task):
    name = "classification"
    peft_task_type = "SEQ_CLS"
    default_metric = "macro_f1"
    metric_names = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "mcc")
    pes_weights = {"accuracy": 2.5, "macro_precision": 2.5, "macro_recall": 2.5, "macro_f1": 2.5}  # Persian study, SA

    def load(self):
        spec = self.spec.data
        dd, report = load_raw(spec)
        for col in (spec.text, spec.label) + ((spec.text_pair,) if spec.text_pair else ()):
            if col not in dd["train"].column_names:
                raise DataError(f"task '{self.spec.name}': column '{col}' not in the data "
                                f"(columns: {', '.join(dd['train'].column_names)}); set data.text / data.label / data.text_pair")
        dd, dropped = self._map_labels(dd)
        if dropped:
            report["dropped_by_label_map"] = dropped
        empty = {k: sum(1 for t in v[spec.text] if not (t or "").strip()) for k, v in dd.items()}
        if any(empty.values()):
            raise DataError(f"task '{self.spec.name}': empty text in column '{spec.text}' ({empty}); clean the data")
        report["labels"] = self.labels
        report["rows"] = {k: len(v) for k, v in dd.items()}
        return dd, report

    def _map_labels(self, dd):
        spec = self.spec.data
        lmap = {str(k): v for k, v in spec.label_map.items()} if spec.label_map else None
        dropped: dict[str, int] = {}
        raw_values = set()
        for split, ds in dd.items():
            vals = [str(v) if v is not None else None for v in ds[spec.label]]
            if lmap is not None:
                unknown = sorted({v for v in vals if v not in lmap}, key=str)
                if unknown:
                    raise DataError(f"task '{self.spec.name}': {split} has label value(s) {unknown[:5]} not in "
                                    f"data.label_map (keys: {', '.join(lmap)}); map them, or map to null to drop")
                mapped = [lmap[v] for v in vals]
            else:
                if None in vals:
                    raise DataError(f"task '{self.spec.name}': {split} has rows without a label in '{spec.label}'")
                mapped = vals
            keep = [i for i, v in enumerate(mapped) if v is not None]
            if len(keep) < len(mapped):
                dropped[split] = len(mapped) - len(keep)
            raw_values |= {mapped[i] for i in keep}
            dd[split] = ds.select(keep).add_column("_label_name", [mapped[i] for i in keep])
        if lmap is not None:  # label order: first appearance in the map
            order = list(dict.fromkeys(v for v in lmap.values() if v is not None))
        else:
            order = sorted(raw_values, key=lambda v: (0, float(v)) if _is_number(v) else (1, v))
        train_labels = set(dd["train"]["_label_name"])
        missing = [lab for lab in raw_values if lab not in train_labels]
        if missing:
            raise DataError(f"task '{self.spec.name}': label(s) {sorted(missing)[:5]} appear in validation/test but "
                            "never in train")
        self.labels = order
        return dd, dropped

    def auto_class(self, family: str, config):
        return sequence_classification_head(family, config)

    def config_updates(self) -> dict:
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": {lab: i for i, lab in enumerate(self.labels)}}

    def head_modules(self, model) -> list[str]:
        return [n for n in ("classifier", "score", "classification_head") if hasattr(model, n)]

    def encode_labels(self, batch) -> list:
        index = {lab: i for i, lab in enumerate(self.labels)}
        return [index[v] for v in batch["_label_name"]]

    def prepare(self, dd, tokenizer, max_length: int):
        spec = self.spec.data

        def encode(batch):
            args = (batch[spec.text], batch[spec.text_pair]) if spec.text_pair else (batch[spec.text],)
            enc = tokenizer(*args, truncation=True, max_length=max_length)
            enc["labels"] = self.encode_labels(batch)
            return carry_group(batch, enc)

        return {split: ds.map(encode, batched=True, remove_columns=ds.column_names, desc=f"tokenising {split}")
                for split, ds in dd.items()}

    def collator(self, tokenizer):
        return MetaCollator(DataCollatorWithPadding(tokenizer))

    def loss(self, outputs, batch):
        return torch.nn.functional.cross_entropy(outputs.logits.float(), batch["labels"])

    def decode(self, outputs, batch, model) -> list:
        return [with_group({"pred": max(range(len(p)), key=p.__getitem__), "probs": p}, batch, i)
                for i, p in enumerate(softmax_list(outputs.logits))]

    def references(self, batch) -> list:
        return batch["labels"].tolist()

    def compute_metrics(self, predictions: list, references: list) -> dict:
        return classification_metrics([p["pred"] for p in predictions], references, len(self.labels))


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


__all__ = ["Classification", "classification_metrics", "sequence_classification_head"]
