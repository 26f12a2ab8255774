"""The task interface: load data, choose the head, prepare features, run the model, decode predictions, score them.

A batch is a dict of tensors the model takes, plus metadata under keys starting with ``_`` (lists, never
passed to the model): example ids, offsets, source texts, evaluation groups (e.g. the language).
"""
from __future__ import annotations

import torch

from ..config import TaskSpec


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


class MetaCollator:
    """Wrap a transformers collator: keys starting with ``_`` are gathered as lists, the rest collated."""

    def __init__(self, base):
        self.base = base

    def __call__(self, features):
        meta = {k for f in features for k in f if k.startswith("_")}
        batch = self.base([{k: v for k, v in f.items() if not k.startswith("_")} for f in features])
        for k in meta:
            batch[k] = [f.get(k) for f in features]
        return batch


class Task:
    name = "base"
    peft_task_type: str | None = None
    default_metric: str = ""  # validation metric (higher is better) for early stopping
    metric_names: tuple[str, ...] = ()
    pes_weights: dict[str, float] = {}
    generative = False  # evaluation generates text (slower; timed apart)
    loss_outside_model = False  # forward() computes the objective itself: methods add their regulariser

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.labels: list[str] = []
        self.metric_info: dict = {}  # how metrics were computed (e.g. sacrebleu signatures), stored with the run
        self.tokenizer = None  # set by the run before prepare(); decode() may need it (generation, padding side)

    @property
    def metric(self) -> str:
        m = self.spec.metric or self.default_metric
        if m not in self.metric_names:
            raise ValueError(f"task '{self.spec.name}': metric '{m}' is not one of {', '.join(self.metric_names)}")
        return m

    def load(self):  # -> (DatasetDict with train/validation/test, report dict)
        raise NotImplementedError

    def auto_class(self, family: str, config):
        raise NotImplementedError

    def config_updates(self) -> dict:
        return {}

    def head_modules(self, model) -> list[str]:
        return []

    def prepare(self, dd, tokenizer, max_length: int):
        raise NotImplementedError

    def collator(self, tokenizer):
        raise NotImplementedError

    def forward(self, model, batch):
        """(training objective, outputs). The objective is ``outputs.loss`` by default, which may carry a
        method's regulariser (AdaLoRA adds its orthogonality penalty there)."""
        out = model(**model_inputs(batch))
        return out.loss, out

    def loss(self, outputs, batch):
        """The task loss alone, for curves and reports."""
        return outputs.loss

    def batch_size(self, batch) -> int:
        return len(batch["input_ids"])

    def decode(self, outputs, batch, model) -> list[dict]:
        raise NotImplementedError

    def references(self, batch) -> list:
        raise NotImplementedError

    def finalize(self, split: str, predictions: list, references: list) -> tuple[list, list]:
        """Per-feature predictions -> per-example (span QA joins the windows of one context)."""
        return predictions, references

    def calibrate(self, validation: dict) -> dict | None:
        """Fit decision settings on the best checkpoint's validation predictions (e.g. per-label
        thresholds); returns what was fitted, stored with the run. Called once, before the test pass."""
        return None

    def compute_metrics(self, predictions: list, references: list) -> dict:
        raise NotImplementedError


def is_prompt_learning(model) -> bool:
    """A peft prompt method (prompt / prefix / P-tuning) is active: token-level outputs then carry the virtual
    tokens first (prompt and P-tuning), and peft cannot align token labels itself."""
    cfg = getattr(model, "active_peft_config", None)
    return bool(getattr(cfg, "is_prompt_learning", False))


def carry_group(batch, enc):
    """Keep the evaluation group (``_group``, e.g. the language) through a batched ``map``."""
    if "_group" in batch:
        enc["_group"] = batch["_group"]
    return enc


def with_group(pred: dict, batch, i) -> dict:
    g = batch.get("_group")
    if g is not None and g[i] is not None:
        pred["group"] = g[i]
    return pred


def softmax_list(logits) -> list[list[float]]:
    return [[round(float(x), 5) for x in p] for p in torch.softmax(logits.float(), dim=-1)]
