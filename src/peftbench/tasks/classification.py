"""Sequence classification: binary or multi-class, single text or text pair (NLI, RTE, CB, BoolQ, CoLA).

Metrics: accuracy, macro precision / recall / F1, MCC (scikit-learn).
"""
from __future__ import annotations

from ..data.loading import DataError, load_raw
from .base import (MetaCollator, Prepared, Raw, Task, carry_group, cross_entropy, label_index, map_splits,
                   require_columns, require_text, softmax_list, with_group)
from ..families import Head, HeadKind


MACRO_NOTE = ("macro precision / recall / F1 average over the labels present in the gold labels or the predictions "
              "(scikit-learn's default); a label absent from both does not count")


def classification_metrics(preds, refs) -> dict:
    """Accuracy, macro P / R / F1 (over the labels in gold or predictions) and MCC, from scikit-learn."""
    from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(refs, preds, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(refs, preds)), "macro_precision": float(p), "macro_recall": float(r),
            "macro_f1": float(f), "mcc": float(matthews_corrcoef(refs, preds))}


def map_labels(task_name: str, dd, spec) -> tuple[object, list[str], dict]:
    """``data.label`` -> ``_label_name`` through ``data.label_map`` (null drops the row, counted), label order:
    the map's, else numeric then alphabetical. Returns (datasets, labels, rows dropped per split)."""
    lmap = {str(k): v for k, v in spec.label_map.items()} if spec.label_map else None
    dropped: dict[str, int] = {}
    raw_values = set()
    for split, ds in dd.items():
        vals = [str(v) if v is not None else None for v in ds[spec.label]]
        if lmap is not None:
            unknown = sorted({v for v in vals if v not in lmap}, key=str)
            if unknown:
                raise DataError(f"task '{task_name}': {split} has label value(s) {unknown[:5]} not in "
                                f"data.label_map (keys: {', '.join(lmap)}); map them, or map to null to drop")
            mapped = [lmap[v] for v in vals]
        else:
            if None in vals:
                raise DataError(f"task '{task_name}': {split} has rows without a label in '{spec.label}'")
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
        raise DataError(f"task '{task_name}': label(s) {sorted(missing)[:5]} appear in validation/test but never in train")
    return dd, order, dropped


class Classification(Task):
    name = "classification"
    weighted = True  # train.class_weights applies (weighted cross-entropy over the labels)
    head_kind = HeadKind.SEQUENCE
    default_metric = "macro_f1"
    metric_names = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "mcc")
    pes_weights = {"accuracy": 2.5, "macro_precision": 2.5, "macro_recall": 2.5, "macro_f1": 2.5}  # Persian study, SA

    def load(self) -> Raw:
        spec = self.spec.data
        dd, report = load_raw(spec)
        require_columns(self.spec.name, dd, [spec.text, spec.label] + ([spec.text_pair] if spec.text_pair else []),
                        "set data.text / data.label / data.text_pair")
        require_text(self.spec.name, dd, [spec.text] + ([spec.text_pair] if spec.text_pair else []))
        dd, labels, dropped = map_labels(self.spec.name, dd, spec)
        if len(labels) < 2:
            raise DataError(f"task '{self.spec.name}': only one class ({labels[0] if labels else 'none'!s}) in the "
                            f"data after the label map; classification needs at least two (check data.label)")
        if dropped:
            report["dropped_by_label_map"] = dropped
        empty = {k: sum(1 for t in v[spec.text] if not (t or "").strip()) for k, v in dd.items()}
        if any(empty.values()):
            raise DataError(f"task '{self.spec.name}': empty text in column '{spec.text}' ({empty}); clean the data")
        report["labels"] = labels
        report["rows"] = {k: len(v) for k, v in dd.items()}
        return Raw(dd, tuple(labels), report)

    def head(self, labels) -> Head:
        return Head(HeadKind.SEQUENCE, labels=tuple(labels))

    def encode_labels(self, batch, index: dict) -> list:
        return [index[v] for v in batch["_label_name"]]

    def prepare(self, raw, tokenizer, arch, max_length) -> Prepared:
        spec = self.spec.data
        index = label_index(raw.labels)

        def encode(batch):
            args = (batch[spec.text], batch[spec.text_pair]) if spec.text_pair else (batch[spec.text],)
            enc = dict(tokenizer(*args, truncation=True, max_length=max_length))
            enc["labels"] = self.encode_labels(batch, index)
            return carry_group(batch, enc)

        from transformers import DataCollatorWithPadding

        return Prepared(map_splits(raw.splits, encode, "tokenising"), MetaCollator(DataCollatorWithPadding(tokenizer)),
                        self.head(raw.labels), raw.labels, tokenizer, arch)

    def loss(self, outputs, batch, prep):
        return cross_entropy(outputs.logits, batch["labels"], prep.extra.get("class_weights"))

    def decode(self, outputs, batch, prep, adapter) -> list:
        return [with_group({"pred": max(range(len(p)), key=p.__getitem__), "probs": p}, batch, i)
                for i, p in enumerate(softmax_list(outputs.logits))]

    def compute_metrics(self, prep, predictions, references, calibration=None) -> dict:
        return classification_metrics([p["pred"] for p in predictions], references)

    def metric_info(self, prep) -> dict:
        return {"macro": MACRO_NOTE}


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


__all__ = ["Classification", "classification_metrics", "map_labels", "MACRO_NOTE"]
