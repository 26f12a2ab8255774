"""Sequence classification: binary or multi-class, single text or text pair (NLI, RTE, CB, BoolQ, CoLA).

Metrics: accuracy, macro precision / recall / F1, MCC (scikit-learn); with ``data.options: {average: binary,
positive_label: NAME}`` also the positive class's precision / recall / F1 (``binary_precision`` ...), which
the Persian study's sentiment scores are (its F1 is the harmonic mean of its P and R), and which then enter
PES in place of the macro ones.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import model_validator

from ..config import Identity
from ..data.loading import DataError, load_raw
from .base import (Metric, MetaCollator, Prepared, Raw, WeightedTask, carry_group, cross_entropy, label_index, map_splits,
                   require_columns, require_text, softmax_list, with_group)
from ..families import Head, HeadKind
from ..options import Options


MACRO_NOTE = ("macro precision / recall / F1 average over the labels present in the gold labels or the predictions "
              "(scikit-learn's default); a label absent from both does not count")


BINARY_METRICS = ("binary_precision", "binary_recall", "binary_f1")


def classification_metrics(preds, refs, positive: int | None = None) -> dict:
    """Accuracy, macro P / R / F1 (over the labels in gold or predictions) and MCC, from scikit-learn; with
    ``positive`` (a label index) also that class's precision / recall / F1 (zero where undefined)."""
    from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(refs, preds, average="macro", zero_division=0)
    out = {"accuracy": float(accuracy_score(refs, preds)), "macro_precision": float(p), "macro_recall": float(r),
           "macro_f1": float(f), "mcc": float(matthews_corrcoef(refs, preds))}
    if positive is not None:
        p, r, f, _ = precision_recall_fscore_support(refs, preds, average="binary", pos_label=positive,
                                                     zero_division=0)
        out.update(binary_precision=float(p), binary_recall=float(r), binary_f1=float(f))
    return out


class ClassificationOptions(Options):
    """``average: binary`` scores the class ``positive_label`` (a label name after the label map) as well."""

    average: Annotated[Literal["macro", "binary"], Identity.ADDED] = "macro"  # (added later: old run ids kept)
    positive_label: Annotated[Optional[str], Identity.ADDED] = None

    @model_validator(mode="after")
    def _positive(self):
        if self.average == "binary" and self.positive_label is None:
            raise ValueError("average: binary needs positive_label (the name of the positive class)")
        if self.average == "macro" and self.positive_label is not None:
            raise ValueError("positive_label is read only with average: binary")
        return self


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


class Classification(WeightedTask):
    name = "classification"
    head_kind = HeadKind.SEQUENCE
    Options = ClassificationOptions
    default_metric = "macro_f1"
    metrics = (*Metric.many("accuracy", "macro_precision", "macro_recall", "macro_f1", confusion=True),
               Metric("mcc", confusion=True, bounds=(-1.0, 1.0)), *Metric.many(*BINARY_METRICS))
    pes_weights = {"accuracy": 2.5, "macro_precision": 2.5, "macro_recall": 2.5, "macro_f1": 2.5}  # Persian study, SA
    binary_pes_weights = {"accuracy": 2.5, "binary_precision": 2.5, "binary_recall": 2.5, "binary_f1": 2.5}

    def __init__(self, spec):
        super().__init__(spec)
        if self.positive is not None:  # the study's sentiment P / R / F1 are the positive class's
            self.pes_weights = dict(self.binary_pes_weights)

    @property
    def positive(self) -> str | None:
        """The positive class's name where binary scores are asked for (``average: binary``), else None
        (subclasses with options of their own, e.g. multi-label, have none)."""
        return self.options.positive_label if getattr(self.options, "average", "macro") == "binary" else None

    @classmethod
    def unreported(cls, options: dict) -> tuple[str, ...]:
        """Metric names this configuration does not report (binary ones without ``average: binary``)."""
        return () if options.get("average") == "binary" else BINARY_METRICS

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
        if self.positive is not None and (len(labels) != 2 or self.positive not in labels):
            raise DataError(f"task '{self.spec.name}': data.options.average binary needs two classes, one of them "
                            f"positive_label '{self.positive}'; the data has {list(labels)[:6]}")
        if dropped:
            report["dropped_by_label_map"] = dropped
        empty = {k: sum(1 for t in v[spec.text] if not (t or "").strip()) for k, v in dd.items()}
        if any(empty.values()):
            raise DataError(f"task '{self.spec.name}': empty text in column '{spec.text}' ({empty}); clean the data")
        report["labels"] = labels
        report["rows"] = {k: len(v) for k, v in dd.items()}
        return Raw(dd, tuple(labels), report)

    def head(self, labels) -> Head:
        return Head(self.head_kind, labels=tuple(labels), pooling=self.pooling)

    def encode_labels(self, batch, index: dict) -> list:
        return [index[v] for v in batch["_label_name"]]

    def prepare(self, raw, tokenizer, arch, max_length, cache=None) -> Prepared:
        spec = self.spec.data
        index = label_index(raw.labels)

        def encode(batch):
            args = (batch[spec.text], batch[spec.text_pair]) if spec.text_pair else (batch[spec.text],)
            enc = dict(tokenizer(*args, truncation=True, max_length=max_length))
            enc["labels"] = self.encode_labels(batch, index)
            return carry_group(batch, enc)

        from transformers import DataCollatorWithPadding

        return Prepared(map_splits(raw.splits, encode, "tokenising", cache), MetaCollator(DataCollatorWithPadding(tokenizer)),
                        self.head(raw.labels), raw.labels, tokenizer, arch)

    def loss(self, outputs, batch, prep):
        return cross_entropy(outputs.logits, batch["labels"], prep.extra.get("class_weights"))

    def decode(self, outputs, batch, prep, adapter) -> list:
        return [with_group({"pred": max(range(len(p)), key=p.__getitem__), "probs": p}, batch, i)
                for i, p in enumerate(softmax_list(outputs.logits))]

    def compute_metrics(self, prep, predictions, references, calibration=None) -> dict:
        positive = None if self.positive is None else prep.labels.index(self.positive)
        return classification_metrics([p["pred"] for p in predictions], references, positive)

    def metric_info(self, prep) -> dict:
        info = {"macro": MACRO_NOTE}
        if self.positive is not None:
            info["binary"] = (f"binary_precision / recall / f1: the class '{self.positive}' "
                              "(scikit-learn, average='binary'); PES reads these")
        return info


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


__all__ = ["Classification", "ClassificationOptions", "classification_metrics", "map_labels", "MACRO_NOTE"]
