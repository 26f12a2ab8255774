"""Multi-label classification (news framing, persuasion techniques): sigmoid head, BCE loss.

``data.label`` holds a list of label names per row, or a string split on ``data.options.separator``
(default ``,``); an empty list / string means no label applies.  Each label gets its own decision threshold,
tuned on the best checkpoint's validation predictions (the F1-maximising value on a 0.05 grid; a label
never positive in validation keeps 0.5) and stored with the run; test predictions use them.

Metrics: micro and macro F1 (and precision / recall), subset accuracy (scikit-learn).
"""
from __future__ import annotations

import numpy as np
from ..options import Options

from ..data.loading import DataError, load_raw
from ..families import Head
from .base import Metric, Raw, require_columns, require_text, with_group
from .classification import Classification

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


class MultiLabelOptions(Options):
    separator: str = ","  # splits a label string into label names


class MultiLabel(Classification):
    name = "multi_label"
    Options = MultiLabelOptions
    calibrated = True
    default_metric = "micro_f1"
    metrics = Metric.many("micro_f1", "macro_f1", "micro_precision", "micro_recall", "subset_accuracy")
    pes_weights = {"micro_f1": 2.5, "macro_f1": 2.5}

    def load(self) -> Raw:
        spec = self.spec.data
        dd, report = load_raw(spec)
        require_columns(self.spec.name, dd, [spec.text, spec.label], "set data.text / data.label")
        require_text(self.spec.name, dd, [spec.text])
        sep = self.options.separator

        def split_labels(v):
            if v is None:
                return []
            if isinstance(v, str):
                return [x.strip() for x in v.split(sep) if x.strip()]
            if not isinstance(v, (list, tuple)):
                raise DataError(f"task '{self.spec.name}': label column '{spec.label}' holds {v!r}; a multi-label "
                                f"row needs a list of labels or a '{sep}'-separated string")
            return [str(x) for x in v]

        for split in dd:
            dd[split] = dd[split].map(lambda v: {"_label_names": split_labels(v)}, input_columns=spec.label,
                                      desc=f"labels {split}")
        seen = {}
        for split in dd:
            for row in dd[split]["_label_names"]:
                seen.update(dict.fromkeys(row))
        train_labels = {x for row in dd["train"]["_label_names"] for x in row}
        missing = sorted(set(seen) - train_labels)
        if missing:
            raise DataError(f"task '{self.spec.name}': label(s) {missing[:5]} appear in validation/test but never in train")
        labels = sorted(seen)
        report.update(labels=labels, rows={k: len(v) for k, v in dd.items()},
                      label_counts={k: {lab: sum(lab in r for r in v["_label_names"]) for lab in labels}
                                    for k, v in dd.items()})
        return Raw(dd, tuple(labels), report)

    def head(self, labels) -> Head:
        return Head(self.head_kind, labels=tuple(labels), problem_type="multi_label_classification",
                    pooling=self.pooling)

    def encode_labels(self, batch, index) -> list:
        hot = []
        for names in batch["_label_names"]:
            v = [0.0] * len(index)
            for n in names:
                v[index[n]] = 1.0
            hot.append(v)
        return hot

    def loss(self, outputs, batch, prep):
        import torch

        return torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits.float(), batch["labels"].float())

    def decode(self, outputs, batch, prep, adapter):
        import torch

        probs = torch.sigmoid(outputs.logits.float()).tolist()
        return [with_group({"probs": [round(p, 5) for p in ps]}, batch, i) for i, ps in enumerate(probs)]

    def references(self, batch):
        return [[j for j, v in enumerate(row) if v > 0.5] for row in batch["labels"].tolist()]

    @staticmethod
    def thresholds(prep, calibration) -> list[float]:
        if calibration:
            return [calibration["thresholds"][lab] for lab in prep.labels]
        return [0.5] * len(prep.labels)

    def finalize(self, prep, split, predictions, references, calibration=None):
        th = self.thresholds(prep, calibration)
        preds = [{"pred": [j for j, p in enumerate(row["probs"]) if p >= th[j]], **row} for row in predictions]
        return preds, references, {}

    def calibrate(self, prep, validation):
        from sklearn.metrics import f1_score

        probs = np.array([p["probs"] for p in validation["predictions"]])
        gold = _multi_hot(validation["references"], len(prep.labels))
        chosen = []
        for j in range(len(prep.labels)):
            if gold[:, j].sum() == 0:
                chosen.append(0.5)
                continue
            scores = [f1_score(gold[:, j], probs[:, j] >= t, zero_division=0) for t in GRID]
            chosen.append(float(GRID[int(np.argmax(scores))]))
        return {"thresholds": dict(zip(prep.labels, chosen)), "fitted_on": "validation"}

    def compute_metrics(self, prep, predictions, references, calibration=None):
        th = np.array(self.thresholds(prep, calibration))
        pred = (np.array([p["probs"] for p in predictions]) >= th).astype(int)
        return multi_label_metrics(pred, _multi_hot(references, len(prep.labels)))


def _multi_hot(rows, n):
    out = np.zeros((len(rows), n), dtype=int)
    for i, r in enumerate(rows):
        out[i, r] = 1
    return out


def multi_label_metrics(pred: np.ndarray, gold: np.ndarray) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    mp, mr, mf, _ = precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
    _, _, maf, _ = precision_recall_fscore_support(gold, pred, average="macro", zero_division=0)
    return {"micro_f1": float(mf), "macro_f1": float(maf), "micro_precision": float(mp), "micro_recall": float(mr),
            "subset_accuracy": float((pred == gold).all(axis=1).mean())}
