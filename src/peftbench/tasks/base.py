"""The task interface. A task holds its spec and typed options and nothing else:

* ``load()`` reads the raw splits -> ``Raw`` (datasets, label names, data report);
* ``prepare(raw, tokenizer, arch, max_length, cache)`` -> ``Prepared`` (features per split, collator, the head
  it needs, task-specific read-only extras): immutable, and the only thing the other hooks read; ``cache``
  (a ``data.cache.FeaturesCache`` or None) is handed on to ``map_splits``;
* ``forward`` / ``loss`` / ``decode`` / ``references`` run on one batch; ``finalize`` turns per-feature
  predictions into per-example ones; ``calibrate`` fits decision settings on validation; ``compute_metrics``
  scores. Each is a function of its arguments: no hook depends on another having run first.

A task never names a model family or a method: the architecture (``families.Architecture``) says how to
pad and generate, and the method adapter (``methods.adapter.ModelAdapter``) hides what a method changes
about the model's inputs and outputs.  This module imports no torch (validation reads ``Options``).

A batch is a dict of tensors the model takes, plus metadata under keys starting with ``_`` (lists, never
passed to the model): example ids, offsets, source texts, evaluation groups (e.g. the language).
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping

from pydantic import BaseModel

from .. import registry
from ..config import TaskSpec
from ..data.cache import FeaturesCache, cached_map
from ..families import Architecture, Head, HeadKind
from ..options import NoOptions

LABEL_KEYS = ("labels", "start_positions", "end_positions")  # targets: the task scores them, the model never sees them


@dataclass(frozen=True)
class Raw:
    """A task's raw splits (``train`` / ``validation`` / ``test``), the names of its labels, what loading did."""

    splits: Any  # datasets.DatasetDict
    labels: tuple[str, ...]
    report: dict


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs from a task, fixed once: features per split, the collator, the head, the label
    names, the tokenizer and architecture they were made for, and task-specific extras (read-only)."""

    features: Mapping[str, Any]
    collator: Callable
    head: Head
    labels: tuple[str, ...]
    tokenizer: Any
    arch: Architecture
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))


@dataclass(frozen=True)
class Metric:
    """One metric a task computes, declared where it is computed; the report, PES, the paired statistics,
    early stopping and the sweeps read it from here."""

    name: str
    percent: bool = False  # reported on a 0-100 scale (PES and the equivalence margin divide / scale by 100)
    higher_is_better: bool = True
    confusion: bool = False  # a function of one confusion matrix of single-label predictions (resampled fast)
    per_example: bool = False  # the mean of the task's ``example_scores`` (the bootstrap resamples the scores)
    bounds: tuple[float | None, float | None] = (0.0, 1.0)  # its range on the 0-1 scale (None: unbounded)

    @property
    def scale(self) -> float:
        return 100.0 if self.percent else 1.0

    @property
    def range(self) -> tuple[float | None, float | None]:
        """Its range on its own scale (intervals are clipped to it)."""
        return tuple(None if b is None else b * self.scale for b in self.bounds)  # type: ignore[return-value]

    @property
    def mean_of_examples(self) -> bool:
        """A mean of per-example scores: accuracy (of single-label predictions) or the task's example_scores."""
        return self.per_example or (self.confusion and self.name == "accuracy")

    @classmethod
    def many(cls, *names: str, **how) -> tuple[Metric, ...]:
        """Several metrics declared alike, e.g. ``Metric.many("accuracy", "mcc", confusion=True)``."""
        return tuple(cls(n, **how) for n in names)


def declared(task_type: str, metric: str) -> Metric:
    """How the task type that computed ``metric`` declares it; a task type not installed here reads as a plain
    0-1, higher-is-better metric (the report, PES and the sweeps all ask here)."""
    try:
        return registry.get("task", task_type).metric_spec(metric)
    except (ValueError, ImportError):
        return Metric(metric)


def percent_metrics(task_type: str) -> frozenset:
    """The metrics a task type declares on a 0-100 scale (none where it is not installed here)."""
    try:
        return frozenset(m.name for m in registry.get("task", task_type).metrics if m.percent)
    except (ValueError, ImportError):
        return frozenset()


class Task:
    name = "base"
    Options: ClassVar[type[BaseModel]] = NoOptions  # data.options, validated with the grid
    default_metric: ClassVar[str] = ""  # validation metric for early stopping and model selection
    metrics: ClassVar[tuple[Metric, ...]] = ()  # what compute_metrics returns (or a plain ``metric_names``)
    metric_names: ClassVar[tuple[str, ...]] = ()  # derived from ``metrics``
    pes_weights: ClassVar[dict[str, float]] = {}
    generative: ClassVar[bool] = False  # evaluation generates text (slower; timed apart)
    calibrated: ClassVar[bool] = False  # calibrate() fits settings on validation before the test pass
    head_kind: ClassVar[HeadKind | None] = None  # the head its prepare() asks for (read by plan --target before any data)
    weighted: ClassVar[bool] = False  # its loss takes per-class weights (train.class_weights, prep.extra)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "metrics" in cls.__dict__:
            cls.metric_names = tuple(m.name for m in cls.metrics)
        elif "metric_names" in cls.__dict__:  # names only: 0-1 scale, higher is better
            cls.metrics = tuple(Metric(n) for n in cls.metric_names)

    @classmethod
    def metric_spec(cls, name: str) -> Metric:
        """The declaration of ``name`` (a plain 0-1, higher-is-better metric where the task does not declare it)."""
        return next((m for m in cls.metrics if m.name == name), Metric(name))

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.options = self.Options.model_validate(
            {k: v for k, v in spec.data.options.items() if k in self.Options.model_fields})

    @property
    def pooling(self) -> str:
        """How a sequence-level head reads the model (``tasks[].head.pooling``; the model's own by default)."""
        return self.spec.head.pooling if self.spec.head else "cls"

    @classmethod
    def unreported(cls, options: dict) -> tuple[str, ...]:
        """Names in ``metric_names`` that a task with these ``data.options`` does not report (validation
        refuses them as ``metric`` or in ``pes_weights``)."""
        return ()

    @property
    def metric(self) -> str:
        m = self.spec.metric or self.default_metric
        if m not in self.metric_names:
            raise ValueError(f"task '{self.spec.name}': metric '{m}' is not one of {', '.join(self.metric_names)}")
        return m

    def load(self) -> Raw:
        raise NotImplementedError

    def prepare(self, raw: Raw, tokenizer, arch: Architecture, max_length: int,
                cache: FeaturesCache | None = None) -> Prepared:
        raise NotImplementedError

    def forward(self, adapter, batch: dict, prep: Prepared):
        """The model's outputs for a batch (targets withheld: ``loss`` scores them)."""
        return adapter(model_inputs(batch))

    def loss(self, outputs, batch: dict, prep: Prepared):
        """The task loss (a scalar tensor); the training objective adds the method's regulariser to it."""
        raise NotImplementedError

    def batch_size(self, batch) -> int:
        return len(batch["input_ids"])

    def decode(self, outputs, batch: dict, prep: Prepared, adapter) -> list[dict]:
        raise NotImplementedError

    def references(self, batch: dict) -> list:
        return batch["labels"].tolist()

    def finalize(self, prep: Prepared, split: str, predictions: list, references: list,
                 calibration: dict | None = None) -> tuple[list, list, dict]:
        """Per-feature predictions -> per-example (span QA joins a context's windows), with what was counted
        on the way (stored as ``metric_info``)."""
        return predictions, references, {}

    def calibrate(self, prep: Prepared, validation: dict) -> dict | None:
        """Decision settings fitted on the best checkpoint's validation predictions (e.g. per-label
        thresholds), stored with the run and passed to ``finalize`` / ``compute_metrics``; None: nothing."""
        return None

    def compute_metrics(self, prep: Prepared, predictions: list, references: list,
                        calibration: dict | None = None) -> dict:
        raise NotImplementedError

    def metric_info(self, prep: Prepared) -> dict:
        """How the metrics are computed (e.g. sacrebleu signatures), stored with the run."""
        return {}


# ----------------------------------------------------------------------------- helpers every task uses

def model_inputs(batch: dict) -> dict:
    """What the model takes: no metadata (``_*``) and no targets."""
    return {k: v for k, v in batch.items() if not k.startswith("_") and k not in LABEL_KEYS}


class WeightedTask(Task):
    """A task whose loss is cross-entropy over its labels, so ``train.class_weights`` applies."""
    weighted = True


class MetaCollator:
    """Wrap a collator: keys starting with ``_`` are gathered as lists, the rest collated by ``base``."""

    def __init__(self, base):
        self.base = base

    def __call__(self, features):
        meta = {k for f in features for k in f if k.startswith("_")}
        batch = self.base([{k: v for k, v in f.items() if not k.startswith("_")} for f in features])
        for k in meta:
            batch[k] = [f.get(k) for f in features]
        return batch


def require_columns(task_name: str, dd, columns, hint: str) -> None:
    """One-line error naming the missing columns and the ones the data has."""
    cols = dd["train"].column_names
    missing = [c for c in columns if c not in cols]
    if missing:
        from ..data.loading import DataError

        more = f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise DataError(f"task '{task_name}': column '{missing[0]}' not in the data{more} (columns: {', '.join(cols)}); "
                        f"{hint}")


def require_text(task_name: str, dd, columns) -> None:
    """Text columns must hold text: one line naming the column and a value that is not."""
    from ..data.loading import DataError

    for split, ds in dd.items():
        for col in columns:
            bad = next((v for v in ds[col] if v is not None and not isinstance(v, str)), None)
            if bad is not None:
                raise DataError(f"task '{task_name}': column '{col}' ({split}) holds {type(bad).__name__} values "
                                f"(e.g. {str(bad)[:40]!r}), not text; set data.text / data.text_pair to text columns")


CARRIED = {"_group": "group", "_cluster": "cluster"}  # raw column -> its key in a prediction row


def carry_group(batch, enc: dict) -> dict:
    """Keep the evaluation group (``_group``, e.g. the language) and the cluster (``_cluster``) through a
    batched ``map``."""
    for col in CARRIED:
        if col in batch:
            enc[col] = batch[col]
    return enc


def with_group(pred: dict, batch, i) -> dict:
    """A prediction row with its example's evaluation group and cluster, where the data has them."""
    for col, key in CARRIED.items():
        g = batch.get(col)
        if g is not None and g[i] is not None:
            pred[key] = g[i]
    return pred


def map_splits(dd, fn, desc: str, cache: FeaturesCache | None = None, **kw) -> dict:
    """``fn`` over every split in batches, the raw columns replaced by what ``fn`` returns; with a ``cache`` (what
    ``prepare`` was given) the result is loaded from / stored in the on-disk features cache (data/cache.py)."""
    return {split: cached_map(ds, fn, f"{desc} {split}", cache, **kw) for split, ds in dd.items()}


def source_hash(task) -> str:
    """The code that prepares a task's features: its module (or package) and this module (part of the features
    key: changing either re-tokenises)."""
    h = hashlib.sha256()
    for path in (Path(inspect.getsourcefile(type(task))), Path(__file__)):
        files = sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()


def label_index(labels) -> dict[str, int]:
    return {lab: i for i, lab in enumerate(labels)}


def softmax_list(logits) -> list[list[float]]:
    import torch

    return [[round(float(x), 5) for x in p] for p in torch.softmax(logits.float(), dim=-1)]


def cross_entropy(logits, targets, weights=None):
    """Mean cross-entropy in float32 over targets that are not -100 (flattened over tokens where needed);
    ``weights``: one per class (``train.class_weights``), the mean then weighted by the targets' weights."""
    import torch

    if weights is not None:
        weights = weights.to(device=logits.device, dtype=torch.float32)
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             weight=weights, ignore_index=-100)


def class_weights(prep: Prepared, setting, task_name: str) -> dict[str, float] | None:
    """Per label, the weight of its class in the loss: ``"balanced"`` is scikit-learn's
    ``compute_class_weight('balanced')`` over the training split's targets (a class absent from train gets 1.0:
    it is never a target), a mapping gives each named label its weight (unnamed labels 1.0)."""
    if setting is None:
        return None
    labels = [str(x) for x in prep.labels]
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - set(labels))
        if unknown:
            raise ValueError(f"train.class_weights: {unknown} are not labels of task '{task_name}'; its labels: "
                             f"{', '.join(labels)}")
        return {name: float(setting.get(name, 1.0)) for name in labels}
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    targets = []
    for batch in prep.features["train"].select_columns(["labels"]).iter(batch_size=10_000):
        for row in batch["labels"]:
            targets.extend(x for x in (row if isinstance(row, list) else [row]) if x != -100)
    present = np.unique(targets)
    balanced = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=np.asarray(targets))))
    return {name: float(balanced.get(i, 1.0)) for i, name in enumerate(labels)}


def right_padding_collator(tokenizer):
    """Token-level tasks: inputs padded on the right whatever the tokenizer's side, so a position means the
    same token in every row; targets stacked (per-token lists padded with -100)."""

    def collate(features):
        import torch

        targets = [k for k in LABEL_KEYS if k in features[0]]
        batch = tokenizer.pad([{k: v for k, v in f.items() if k not in targets} for f in features],
                              return_tensors="pt", padding_side="right")
        width = batch["input_ids"].shape[1]
        for k in targets:
            values = [f[k] for f in features]
            if isinstance(values[0], list):
                values = [v + [-100] * (width - len(v)) for v in values]
            batch[k] = torch.tensor(values)
        return batch

    return MetaCollator(collate)
