"""Sequence regression: one real number per text or text pair (STS-B-style similarity, a rating).

Metrics: Pearson and Spearman correlation (scipy), mean squared and mean absolute error -- the two errors
lower-is-better, declared so: early stopping, sweeps, searches, verdicts, the ranking across tasks and the Pareto
front read the declaration, and PES refuses them as weights. ``data.label`` holds the target (a number on every
row); the head is one linear output on the sequence representation, trained on the squared error.
"""
from __future__ import annotations

import math

from ..data.loading import DataError, load_raw
from ..families import Head, HeadKind
from .base import Metric, MetaCollator, Prepared, Raw, Task, carry_group, map_splits, require_columns, require_text, with_group


def regression_metrics(preds, refs) -> dict:
    """Pearson / Spearman (scipy; None where either side is constant) and MSE / MAE (scikit-learn)."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    p, y = np.asarray(preds, dtype=float), np.asarray(refs, dtype=float)
    constant = len(p) < 2 or np.ptp(p) == 0 or np.ptp(y) == 0
    return {"pearson": None if constant else float(pearsonr(p, y)[0]),
            "spearman": None if constant else float(spearmanr(p, y)[0]),
            "mse": float(mean_squared_error(y, p)), "mae": float(mean_absolute_error(y, p))}


class Regression(Task):
    name = "regression"
    head_kind = HeadKind.SEQUENCE
    default_metric = "pearson"
    metrics = (Metric("pearson", bounds=(-1.0, 1.0)), Metric("spearman", bounds=(-1.0, 1.0)),
               Metric("mse", higher_is_better=False, per_example=True, bounds=(0.0, None)),
               Metric("mae", higher_is_better=False, per_example=True, bounds=(0.0, None)))
    pes_weights = {"pearson": 5.0, "spearman": 5.0}

    def load(self) -> Raw:
        spec = self.spec.data
        dd, report = load_raw(spec)
        texts = [spec.text] + ([spec.text_pair] if spec.text_pair else [])
        require_columns(self.spec.name, dd, [*texts, spec.label], "set data.text / data.label / data.text_pair")
        require_text(self.spec.name, dd, texts)
        for split, ds in dd.items():
            bad = next(((i, v) for i, v in enumerate(ds[spec.label]) if not _finite(v)), None)
            if bad is not None:
                raise DataError(f"task '{self.spec.name}': {split} row {bad[0]} has target {bad[1]!r} in "
                                f"'{spec.label}'; a regression target is a finite number on every row")
            dd[split] = ds.add_column("_target", [float(v) for v in ds[spec.label]])
        report["rows"] = {k: len(v) for k, v in dd.items()}
        return Raw(dd, (), report)

    def prepare(self, raw, tokenizer, arch, max_length, cache=None) -> Prepared:
        spec = self.spec.data

        def encode(batch):
            args = (batch[spec.text], batch[spec.text_pair]) if spec.text_pair else (batch[spec.text],)
            enc = dict(tokenizer(*args, truncation=True, max_length=max_length))
            enc["labels"] = batch["_target"]
            return carry_group(batch, enc)

        from transformers import DataCollatorWithPadding

        head = Head(self.head_kind, num_outputs=1, problem_type="regression", pooling=self.pooling)
        return Prepared(map_splits(raw.splits, encode, "tokenising", cache), MetaCollator(DataCollatorWithPadding(tokenizer)),
                        head, (), tokenizer, arch)

    def loss(self, outputs, batch, prep):
        import torch

        return torch.nn.functional.mse_loss(outputs.logits.float().view(-1), batch["labels"].float().view(-1))

    def decode(self, outputs, batch, prep, adapter) -> list:
        return [with_group({"pred": float(v)}, batch, i) for i, v in enumerate(outputs.logits.float().view(-1).tolist())]

    def compute_metrics(self, prep, predictions, references, calibration=None) -> dict:
        return regression_metrics([p["pred"] for p in predictions], references)

    def example_scores(self, predictions, references) -> dict[str, list[float]]:
        """Per example: the squared and the absolute error (MSE and MAE are their means)."""
        err = [p["pred"] - float(y) for p, y in zip(predictions, references)]
        return {"mse": [e * e for e in err], "mae": [abs(e) for e in err]}


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v)) and not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


__all__ = ["Regression", "regression_metrics"]
