"""The experiment specs: a grid (models x methods x tasks x seeds plus shared training settings) and the runs it
expands to. Closed choices are ``Literal`` types; names from a registry are checked against it; what enters a
run's identity is marked on the fields (``identity.py``). Loading and overrides: ``load.py``, ``overrides.py``."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import registry
from .errors import FIELD_ERROR, field_error, message
from .identity import FEATURES, Identity, config_hash, safe_name, strip


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class QuantizationSpec(_Spec):
    """A quantised base model through bitsandbytes (QLoRA: 4-bit NF4, double quantisation, bf16 compute): the
    base weights are frozen at ``bits``; only a method's adapter (and the head) trains. Needs a CUDA GPU."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"  # 4-bit only
    double_quant: bool = True  # 4-bit only: quantise the quantisation constants too (QLoRA)
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # 4-bit only: the matmuls' dtype
    skip_modules: Optional[list[str]] = None  # modules kept unquantised (default: the task heads)

    def describe(self) -> str:
        return f"{self.bits}-bit {self.quant_type}" if self.bits == 4 else "8-bit"


class ModelSpec(_Spec):
    """A model source: hub id (``org/name``), local checkpoint folder, ``*.gguf`` file or ``tiny:<family>``."""

    source: str
    name: Optional[str] = None  # short label for tables; derived from source when empty
    gguf_file: Optional[str] = None  # for a hub repo or folder holding several GGUF files
    revision: Optional[str] = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = False  # run a hub repo's own Python code: only when you trust it
    quantization: Annotated[Optional[QuantizationSpec], Identity.ADDED] = None  # e.g. {bits: 4}: QLoRA's base
    methods: Annotated[Optional[list[str]], Identity.NEUTRAL] = None  # labels of the grid's methods run on it (default: every one)

    @model_validator(mode="after")
    def _quantised_source(self):
        if self.quantization is not None and self.source.strip().startswith("tiny:"):
            raise field_error("quantization", "bitsandbytes quantises pretrained weights as they load; a tiny: model "
                              "is built from a config (save it with save_pretrained and point source at the folder)")
        return self

    @model_validator(mode="after")
    def _name(self):
        if not self.name:
            src = self.source.strip().rstrip("/")
            name = src.split(":", 1)[1] if src.startswith("tiny:") else Path(src).name.removesuffix(".gguf")
            if not name:  # (assigning an empty name would re-run this validator forever)
                raise ValueError(f"no short name can be derived from source {self.source!r}; set models[].name")
            self.name = name
        return self


class RangeSpec(_Spec):
    """A range an optuna search draws from: integers where ``low``, ``high`` (and ``step``) are integers."""

    low: Union[int, float]
    high: Union[int, float]
    log: bool = False  # draw on a log scale (learning rates); needs low > 0
    step: Optional[Union[int, float]] = Field(None, gt=0)  # a grid of low, low+step, ... (not with log)

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise field_error("high", f"must be above low ({self.low}); got {self.high}")
        if self.log and self.low <= 0:
            raise field_error("low", f"a log range needs low > 0; got {self.low}")
        if self.log and self.step is not None:
            raise field_error("step", "a log range takes no step; drop one of them")
        return self

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step or 1))


class OptunaSpec(_Spec):
    """An optuna search over a method's settings: ``trials`` settings drawn one after another (TPE after
    ``startup`` random ones), each trained on the sweep's first ``seeds`` seeds and scored by its best validation
    score; the median pruner stops a trial whose best validation score so far is below the median of the finished
    trials' at the same epoch. Every draw is a function of the search's spec and the trials before it, so a search
    killed mid-way goes on with the same trials (``search.py``)."""

    trials: int = Field(ge=1)
    space: dict[str, Any] = Field(min_length=1)  # field -> [choices] or {low, high, log, step} (a RangeSpec)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = Field(0, ge=0)
    startup: int = Field(5, ge=0)  # random draws before TPE takes over
    parallel: int = Field(1, ge=1)  # trials drawn together (from the trials finished before them) and run at once
    # an equal tuning budget in compute: no trial is drawn once the finished ones have used this many GPU- or
    # CPU-seconds (RunResult.compute_seconds); ``trials`` stays the most. Give every method the same value (or the
    # same ``trials``) for a budget-fair comparison. Which trials a grid holds, not what one computes.
    compute_seconds: Annotated[Optional[float], Identity.NEUTRAL] = Field(None, gt=0)
    pruner: Literal["median", "none"] = "median"
    prune_after: int = Field(1, ge=0)  # the first epoch after which the pruner may stop a trial
    prune_startup: int = Field(3, ge=0)  # finished trials before the pruner stops any

    @field_validator("space")
    @classmethod
    def _choices(cls, v):
        out = {}
        for name, values in v.items():
            if isinstance(values, list) and values:
                out[name] = values
            elif isinstance(values, (dict, RangeSpec)):
                try:
                    out[name] = RangeSpec.model_validate(values)
                except ValidationError as err:
                    e = err.errors()[0]
                    inner = e["ctx"]["path"] if e["type"] == FIELD_ERROR else ".".join(map(str, e["loc"]))
                    raise field_error(f"{name}.{inner}" if inner else name, message(e)) from None
            else:
                raise field_error(name, f"a list of values to choose from (e.g. [8, 16]) or a range (e.g. {{low: 1.0e-5, "
                                  f"high: 1.0e-3, log: true}}); got {values!r}")
        return out

    def values(self) -> dict[str, list]:
        """Field -> the values to check as settings (a range's ends)."""
        return {k: v if isinstance(v, list) else [v.low, v.high] for k, v in self.space.items()}


class SweepSpec(_Spec):
    """A small sweep for one method: every combination of the listed values is run (and stored); the report keeps
    the combination with the best mean validation score over seeds and shows only its test scores. Any run field
    may be listed: ``lr``, the method's options (``r``, ``lora_alpha``, ``lora_dropout`` ...) and the training
    settings (``batch_size``, ``warmup_ratio``, ``weight_decay``, ``epochs`` ...), e.g.
    ``{lr: [1e-4, 3e-4], r: [8, 16]}``: four settings. ``seeds: k`` compares them on the grid's first k seeds only
    and runs the other seeds at the chosen one (``sweeps.py``). ``optuna: {trials, space}`` searches instead of
    listing (``OptunaSpec``)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)  # the other fields swept: name -> values

    lr: Optional[list[float]] = Field(None, min_length=1)
    seeds: Annotated[Optional[int], Identity.NEUTRAL] = Field(None, ge=1)  # None: every value on every seed
    # up to this many rates beyond the listed ones where the best is at an edge (sweeps.extension): which runs a
    # grid holds, not what one computes
    extend: Annotated[int, Identity.NEUTRAL] = Field(0, ge=0)
    optuna: Annotated[Optional[OptunaSpec], Identity.ADDED] = None

    @model_validator(mode="before")
    @classmethod
    def _extend_in_range(cls, data):
        """``lr: {low, high, points, extend: 2}`` is ``lr: {low, high, points}, extend: 2``."""
        if isinstance(data, dict) and isinstance(data.get("lr"), dict) and "extend" in data["lr"]:
            if "extend" in data:
                raise field_error("extend", "given twice (in lr's range and beside it); keep one")
            data = {**data, "lr": {k: v for k, v in data["lr"].items() if k != "extend"}, "extend": data["lr"]["extend"]}
        return data

    @field_validator("lr", mode="before")
    @classmethod
    def _log_range(cls, v):
        """``lr: {low: 1e-4, high: 1e-2, points: 4}``: that many log-spaced rates from low to high, ends included
        (3 significant digits), stored as the list they expand to -- the same runs as listing them."""
        if not isinstance(v, dict):
            return v
        unknown = sorted(set(v) - {"low", "high", "points"})
        if unknown or not {"low", "high", "points"} <= set(v):
            raise ValueError(f"a learning-rate range is {{low, high, points}} (got {sorted(v)})")
        low, high, points = v["low"], v["high"], v["points"]
        if not (isinstance(points, int) and points >= 2):
            raise ValueError(f"points must be an integer >= 2 (got {points!r})")
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0 < low < high):
            raise ValueError(f"a range needs 0 < low < high (got low {low!r}, high {high!r})")
        ratio = (high / low) ** (1 / (points - 1))
        return [float(f"{low * ratio ** i:.3g}") for i in range(points)]

    @field_validator("lr")
    @classmethod
    def _positive(cls, v):
        if v is not None and any(x <= 0 for x in v):
            raise ValueError(f"learning rates must be > 0 (got {v})")
        return v

    @model_validator(mode="after")
    def _lists(self):
        for name, values in (self.model_extra or {}).items():
            if not isinstance(values, list) or not values:
                raise field_error(name, f"a sweep lists the values to try, e.g. {name}: [a, b] (got {values!r})")
        if self.optuna is not None and self.axes():
            raise field_error(next(iter(self.axes())), "an optuna search draws its settings from optuna.space; "
                              "move the field there (e.g. space: {lr: {low: 1.0e-5, high: 1.0e-3, log: true}})")
        if not self.axes() and self.optuna is None:
            raise ValueError("a sweep needs at least one field with values to try, e.g. lr: [1.0e-4, 3.0e-4]")
        if self.extend and (self.optuna is not None or not self.lr or len(set(self.lr)) < 2 or self.model_extra):
            raise field_error("extend", "extends a learning-rate sweep beyond its edges: it needs lr with at least 2 "
                              "values as the sweep's only field (got "
                              + (", ".join(self.values()) or "no fields") + ")")
        return self

    def axes(self) -> dict[str, list]:
        """Field -> the values tried, in the order given (``lr`` first); none for an optuna search."""
        return {**({"lr": self.lr} if self.lr else {}), **(self.model_extra or {})}

    def values(self) -> dict[str, list]:
        """Field -> the values to check as settings: the listed ones, or an optuna search's choices and ends."""
        return self.optuna.values() if self.optuna is not None else self.axes()


SWEEPABLE_TRAIN = ("epochs", "batch_size", "grad_accum", "weight_decay", "warmup_ratio", "scheduler", "max_grad_norm",
                   "max_length", "epoch_fraction", "patience", "min_epochs", "precision", "padding", "optimizer",
                   "class_weights")  # training settings a sweep or a method's own ``train`` may set


def registered(kind: str):
    """A name that must be in the ``kind`` registry (one-line error with the allowed names)."""
    return Annotated[str, AfterValidator(lambda v: registry.check(kind, v))]


class MethodSpec(_Spec):
    """A fine-tuning method (``name`` from the method registry) and its options, validated against the options
    the method declares (``peftbench list`` shows them). Option names may also stand at the top level:
    ``{name: lora, r: 16}`` is ``{name: lora, options: {r: 16}}``."""

    name: registered("method")
    label: Optional[str] = None  # distinguishes two variants of one method in a grid
    lr: Optional[float] = Field(None, gt=0)  # overrides task and train learning rates for this method
    sweep: Optional[SweepSpec] = None  # e.g. {lr: [1e-4, 3e-4, 1e-3]}: one run per value, best on validation
    options: dict[str, Any] = Field(default_factory=dict)  # the method's options, defaults filled in
    # training settings of this method's runs over the grid's (e.g. {batch_size: 16} for full fine-tuning only)
    train: Annotated[dict[str, Any], Identity.ADDED] = {}
    point: Annotated[Optional[dict[str, Any]], Identity.NEUTRAL] = None  # a sweep's setting this variant runs
    trial: Annotated[Optional[int], Identity.NEUTRAL] = None  # an optuna search's trial number (from 0)
    # an optuna trial's pruner and the curves it compares with (set by search.py, read by the training loop)
    prune: Annotated[Optional[dict[str, Any]], Identity.NEUTRAL] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        if isinstance(data, dict):
            own = set(cls.model_fields)
            extra = {k: v for k, v in data.items() if k not in own}
            if extra and isinstance(data.get("options") or {}, dict):  # (a non-mapping options: pydantic says so)
                data = {k: v for k, v in data.items() if k in own}
                data["options"] = {**extra, **(data.get("options") or {})}
        return data

    @model_validator(mode="after")
    def _label_and_options(self):
        if not self.label:
            self.label = self.name
        model = registry.options("method", self.name)
        if model is not None:
            checked = validate_options(model, self.options, f"method '{self.name}'", "options")
            if checked != self.options:  # (assignment re-runs this validator)
                self.options = checked
        unknown = [k for k in self.train if k not in SWEEPABLE_TRAIN]
        if unknown:
            raise field_error(f"train.{unknown[0]}", f"not a training setting a method may set; allowed: "
                              f"{', '.join(SWEEPABLE_TRAIN)}")
        for name, values in (self.sweep.values() if self.sweep else {}).items():
            if name == "lr":
                if any(not isinstance(v, (int, float)) or v <= 0 for v in values):
                    raise field_error("sweep.lr", f"learning rates must be numbers > 0 (got {values})")
                continue
            if model is not None and name in model.model_fields:
                for value in values:  # each value checked as the option it sets
                    validate_options(model, {**self.options, name: value}, f"method '{self.name}'", "sweep")
            elif name not in SWEEPABLE_TRAIN:
                options = ", ".join(model.model_fields) if model is not None else ""
                raise field_error(f"sweep.{name}", f"not an option of method '{self.name}' or a training setting; "
                                  f"allowed: lr, {options + ', ' if options else ''}{', '.join(SWEEPABLE_TRAIN)}")
        return self


def validate_options(model: type[BaseModel], values: dict, owner: str, where: str, extra_allowed=()) -> dict:
    """``values`` checked against an options model: a one-line error naming the option and the allowed names;
    returns the options with their defaults (keys in ``extra_allowed`` pass through, e.g. a recipe's)."""
    mine = {k: v for k, v in values.items() if k not in extra_allowed}
    try:
        checked = model.model_validate(mine).model_dump(mode="json")
    except ValidationError as err:
        e = err.errors()[0]
        name = ".".join(str(x) for x in e["loc"])
        allowed = ", ".join([*model.model_fields, *extra_allowed]) or "none"
        if e["type"] == "extra_forbidden":
            msg = f"unknown option of {owner}; allowed: {allowed}"
        elif e["type"] == "missing":
            msg = f"required option of {owner} is missing"
        else:
            msg = message(e)
        raise field_error(f"{where}{'.' + name if name else ''}", msg) from None
    return {**checked, **{k: v for k, v in values.items() if k in extra_allowed}}


class DataSpec(_Spec):
    """Where a task's data comes from.

    ``source`` is a hub dataset id, a local file/folder (CSV, TSV, JSON, JSONL), or a named recipe
    (``recipe:<name>``, see ``peftbench list``) that builds the splits from a known corpus layout.
    """

    source: str
    path: Optional[str] = None  # root folder for recipes
    subset: Optional[str] = None  # hub config name
    splits: dict[str, str] = Field(default_factory=dict)  # split -> file (local) or split name (hub)
    delimiter: Optional[str] = None  # CSV/TSV field separator when the extension misleads (FarsTail: TAB in .csv)
    text: str = "text"
    text_pair: Optional[str] = None
    label: str = "label"
    label_map: Optional[dict[str, Optional[str]]] = None  # raw value -> label name; null drops the row
    validation_fraction: float = Field(0.1, ge=0, lt=1)  # carved from train when no validation split
    test_fraction: float = Field(0.1, ge=0, lt=1)  # carved from train when no test split
    max_train_samples: Optional[int] = Field(None, ge=1)
    max_eval_samples: Optional[int] = Field(None, ge=1)  # validation cap (and test's, unless max_test_samples)
    max_test_samples: Annotated[Optional[int], Identity.ADDED] = Field(None, ge=1)  # test cap: a larger test set than validation
    group: Optional[str] = None  # column (e.g. language): test metrics are also reported per value
    # column naming each row's cluster (aligned translations of one sentence, a document's sentences): the paired
    # comparisons resample test examples by cluster; span QA clusters questions by their passage without it
    cluster: Annotated[Optional[str], Identity.ADDED] = None
    train_groups: Optional[list[str]] = None  # train/validate on these group values only; test on all (zero-shot)
    options: dict[str, Any] = Field(default_factory=dict)  # task-type specific (see the task's docs)

    @model_validator(mode="after")
    def _groups(self):
        if self.train_groups and not self.group:
            raise ValueError("train_groups needs data.group (the column holding e.g. the language)")
        return self


class HeadSpec(_Spec):
    """How a sequence-level task head reads the model: ``pooling: cls`` (the model's own: the first token through
    its pooler for encoders, the last token for decoders) or ``mean`` (the mean of the last hidden states over the
    tokens the attention mask keeps, then a linear layer: how e5 and sentence-transformers encoders were
    pretrained to represent a text; the model's pooler is dropped)."""

    pooling: Literal["cls", "mean"] = "cls"


class GenerationSpec(_Spec):
    """Decoding settings for generative tasks (seq2seq); evaluation time is recorded apart from training."""

    num_beams: int = Field(1, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    length_penalty: float = 1.0


class TaskSpec(_Spec):
    name: str
    type: Annotated[registered("task"), FEATURES] = "classification"
    data: Annotated[DataSpec, FEATURES]
    lr: Optional[float] = Field(None, gt=0)  # 0 is an error, not "the default"
    epochs: Optional[int] = Field(None, ge=1)
    patience: Annotated[Optional[int], Identity.ADDED] = Field(None, ge=0)  # this task's early-stopping patience (default: train.patience)
    models: Annotated[Optional[list[str]], Identity.NEUTRAL] = None  # names of the grid's models this task runs on (default: every model)
    max_length: Annotated[Optional[int], FEATURES] = Field(None, ge=8)
    metric: Optional[str] = None  # validation metric for early stopping / model selection
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    pes_weights: Optional[dict[str, float]] = None
    head: Annotated[Optional[HeadSpec], Identity.ADDED] = None  # e.g. {pooling: mean}; None: the model's own

    @model_validator(mode="after")
    def _head(self):
        kind = getattr(registry.get("task", self.type), "head_kind", None)  # a HeadKind (a str enum)
        if self.head is not None and self.head.pooling == "mean" and kind != "sequence_classification":
            raise field_error("head.pooling", f"mean pooling reads one vector per input, for a sequence-level task "
                              f"(classification, multi_label, multiple_choice); task type '{self.type}' has a "
                              f"{getattr(kind, 'value', 'no')} head")
        return self

    @model_validator(mode="after")
    def _options(self):
        model = registry.options("task", self.type)
        if model is not None:
            recipe = self.data.source.split(":", 1)[1] if self.data.source.startswith("recipe:") else None
            recipe_model = registry.options("recipe", recipe) if recipe in registry.names("recipe") else None
            extra = tuple(recipe_model.model_fields) if recipe_model else ()
            if recipe_model:
                validate_options(recipe_model, {k: v for k, v in self.data.options.items() if k in extra},
                                 f"recipe '{recipe}'", "data.options")
            checked = validate_options(model, self.data.options, f"task type '{self.type}'", "data.options", extra)
            if checked != self.data.options:
                self.data.options = checked
        return self

    @model_validator(mode="after")
    def _metrics(self):
        """The validation metric and the PES weights name metrics this task type reports."""
        cls = registry.get("task", self.type)
        names = getattr(cls, "metric_names", ())
        unreported = cls.unreported(self.data.options)
        if self.metric is not None and self.metric not in names:
            raise field_error("metric", f"'{self.metric}' is not a metric of task type '{self.type}'; allowed: "
                             f"{', '.join(names)}")
        if self.metric in unreported:
            raise field_error("metric", f"'{self.metric}' is not reported with data.options {self.data.options or '{}'} "
                             f"(binary metrics need data.options average: binary and positive_label)")
        for key, weight in (self.pes_weights or {}).items():
            if key not in names:
                raise field_error(f"pes_weights.{key}", f"not a metric of task type '{self.type}'; allowed: "
                                 f"{', '.join(names)}")
            if key in unreported:
                raise field_error(f"pes_weights.{key}", f"not reported with data.options {self.data.options or '{}'} "
                                 f"(binary metrics need data.options average: binary and positive_label)")
            if not weight > 0:
                raise field_error(f"pes_weights.{key}", f"weights must be > 0 (got {weight})")
            if not cls.metric_spec(key).higher_is_better:
                higher = [n for n in names if cls.metric_spec(n).higher_is_better]
                raise field_error(f"pes_weights.{key}", f"'{key}' is lower-is-better, and PES weighs scores that "
                                  f"rise with quality; allowed: {', '.join(higher) or 'none'}")
        return self


class AnalysisSpec(_Spec):
    """Analyses after training, stored under ``analysis`` in the run's result (see README, Analyses)."""

    intruders: bool = False  # intruder dimensions of the fine-tuned weight matrices (Shuttleworth et al. 2024)
    top_k: int = Field(10, ge=1)  # top singular vectors of each fine-tuned matrix examined
    threshold: float = Field(0.5, gt=0, lt=1)  # below this cosine to every pre-trained direction: an intruder
    forgetting_text: Optional[str] = None  # held-out target-language text (.txt: a text per line; .jsonl: a field)
    forgetting_field: str = "text"  # the field of a .jsonl file
    forgetting_samples: int = Field(200, ge=1)  # texts used (the first N)


class LauncherSpec(_Spec):
    """One run on several processes (GPUs, or CPU processes with gloo) through ``accelerate launch``: DDP, or
    with ``fsdp`` the model sharded over the processes (FSDP2; ``run/distributed.py``).
    ``train.batch_size`` stays the global batch: each of ``num_processes`` processes takes its share of every
    batch, so a run means the same optimisation whatever it runs on."""

    num_processes: int = Field(2, ge=1)
    config_file: Optional[str] = None  # an accelerate config file (``accelerate config``), passed unchanged
    main_process_port: Optional[int] = Field(None, ge=1, le=65535)  # None: a free port on this host
    args: list[str] = Field(default_factory=list)  # more ``accelerate launch`` arguments, passed unchanged
    find_unused_parameters: bool = False  # DDP: for models whose trainable parameters may get no gradient
    fsdp: Annotated[bool, Identity.ADDED] = False  # shard parameters, gradients and optimizer state (FSDP2) instead of replicating them (DDP)
    # (an accelerate config file of distributed_type FSDP shards too: read by preflight and the run, not here —
    # validation reads no files; run/distributed.shards)


class TrainSpec(_Spec):
    """Shared training settings; defaults follow the Persian study (AdamW, batch 32, seed 42)."""

    lr: Optional[float] = Field(None, gt=0)  # None: each method's default_lr for the model family
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: Optional[int] = Field(None, ge=1)
    max_length: int = Field(128, ge=8)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    scheduler: Literal["linear", "constant", "cosine"] = "linear"
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: Optional[float] = 1.0
    patience: Optional[int] = Field(1, ge=0)  # None or 0 disables early stopping
    min_epochs: Annotated[int, Identity.ADDED] = Field(0, ge=0)  # no early stop before this epoch (lets runs leave a majority-class plateau)
    # go on past ``epochs``, up to this many, while each further epoch still sets a new best validation score (the
    # learning-rate schedule then spans extend_to epochs); None: stop at ``epochs``
    extend_to: Annotated[Optional[int], Identity.ADDED] = Field(None, ge=2)
    epoch_fraction: float = Field(1.0, gt=0, le=1)  # "feed a random 50% of train each epoch"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    eval_before_training: bool = False  # validation pass before the first step: curves start at epoch 0
    export_merged: bool = False  # LoRA family: merge the adapter into the base model, check logits, save it
    device: str = "auto"
    threads: Optional[int] = Field(None, ge=1)  # None: every core this process may use (runs go one at a time)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    padding: Annotated[Literal["dynamic", "max_length"], Identity.ADDED] = "dynamic"  # dynamic | max_length; max_length: the studies' fixed padding (exact reproduction)
    group_by_length: Annotated[bool, Identity.ADDED] = False  # batch rows of similar length together (less padding computed)
    cache_features: Annotated[bool, Identity.NEUTRAL] = True  # tokenised features cached on disk ($PEFTBENCH_CACHE), shared across runs and grids
    log_every: Annotated[int, Identity.NEUTRAL] = Field(16, ge=1)  # optimizer steps between progress-bar loss updates (and GPU NaN checks)
    tf32: Annotated[bool, Identity.ADDED] = False  # CUDA: TensorFloat-32 matmuls (faster on Ampere+, slightly less exact)
    gradient_checkpointing: Annotated[bool, Identity.ADDED] = False  # recompute activations in the backward pass: less memory, more time
    compile: Annotated[bool, Identity.ADDED] = False  # torch.compile the model (where it works; the first steps are slower)
    optimizer: Annotated[Literal["adamw", "adamw_8bit"], Identity.ADDED] = "adamw"  # adamw | adamw_8bit; adamw_8bit: bitsandbytes' 8-bit AdamW (CUDA)
    # after every epoch, save what the rest of the run depends on in its folder (checkpoint/): a killed run started
    # again goes on from its last saved epoch with the same final metrics (run/checkpoint.py)
    checkpoint_every: Annotated[Optional[Literal["epoch"]], Identity.NEUTRAL] = None
    keep_checkpoints: Annotated[bool, Identity.NEUTRAL] = False  # keep checkpoint/ when the run has finished
    # experiment trackers (optional extras): per-step loss, per-epoch validation, config, final costs; files under
    # the run folder unless a tracker's own settings send them elsewhere (trackers/)
    trackers: Annotated[list[registered("tracker")], Identity.NEUTRAL] = Field(default_factory=list)
    # after the run: saved size, forward latency / throughput at batch 1 and the eval batch, merged vs unmerged
    inference_cost: Annotated[bool, Identity.NEUTRAL] = True
    launcher: Annotated[Optional[LauncherSpec], Identity.ADDED] = None  # one run on several processes / GPUs (accelerate launch, DDP)
    # weighted cross-entropy for classification, token classification and multiple choice: "balanced"
    # (scikit-learn's n_samples / (n_classes * count), from the training split) or {label: weight}
    class_weights: Annotated[Optional[Union[Literal["balanced"], dict[str, Annotated[float, Field(gt=0)]]]], Identity.ADDED] = None

    @model_validator(mode="after")
    def _global_batch(self):
        n = self.launcher.num_processes if self.launcher else 1
        if self.batch_size % n:
            raise field_error("batch_size", f"{self.batch_size} is not a multiple of launcher.num_processes ({n}): "
                             "each process takes an equal share of every batch; use a multiple")
        if len(set(self.trackers)) < len(self.trackers):
            raise field_error("trackers", f"{self.trackers} names a tracker twice; name each once")
        if self.checkpoint_every and n > 1:
            raise field_error("checkpoint_every", f"not with train.launcher on {n} processes (each would need its own "
                              "state); a run on several processes starts again from its beginning")
        conflict = self.fsdp_conflict() if self.launcher and self.launcher.fsdp else None
        if conflict:
            raise field_error(*conflict)
        return self

    def fsdp_conflict(self) -> Optional[tuple[str, str]]:
        """The first setting that cannot run on a sharded model (FSDP2), as (field, why), or None."""
        for name in ("export_merged", "compile"):
            if getattr(self, name):
                return name, "not with launcher.fsdp (sharded parameters); run it without FSDP"
        if self.analysis.intruders or self.analysis.forgetting_text:
            return "analysis", "not with launcher.fsdp (the analyses read whole weight matrices); run it without FSDP"
        return None

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v not in ("auto", "cpu", "cuda") and not v.startswith("cuda:"):
            raise ValueError(f"'{v}' is not one of auto, cpu, cuda, cuda:N")
        return v


class ReportSpec(_Spec):
    """How the report compares methods (nothing here changes a run or its id). ``equivalence_margin`` is on the
    metric's 0-1 scale (0.02: two points of accuracy, F1 or, for metrics reported in percent, 2.0 points)."""

    baseline: str = "full"  # the method label every other method is compared with, paired
    equivalence_margin: float = Field(0.02, gt=0, lt=1)  # TOST: "comparable" means within ±margin, shown
    correction: Literal["holm", "bonferroni", "none"] = "holm"  # over every comparison the report makes
    alpha: float = Field(0.05, gt=0, le=0.2)  # family-wise level of the verdicts
    resamples: int = Field(1000, ge=20, le=100000)  # test-set resamples per comparison (metrics no mean of examples)
    # also give each verdict without the seeds that collapsed onto one prediction (both sides' seed dropped, so the
    # pairing holds), the two corrected together and shown side by side
    exclude_collapsed: bool = False


def _known(given, allowed: list[str], path: str, what: str) -> None:
    """Refuse names in ``given`` (a list a grid field refers to) that are not among this grid's ``allowed`` ones."""
    unknown = [n for n in given or () if n not in allowed]
    if unknown:
        raise field_error(path, f"{unknown} are not {what} of this grid; allowed: {', '.join(allowed)}")


class GridSpec(_Spec):
    name: str = "grid"
    models: list[ModelSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    tasks: list[TaskSpec] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [42], min_length=1)
    train: TrainSpec = Field(default_factory=TrainSpec)
    output_dir: str = "results"
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _task_models(self):
        names = [m.name for m in self.models]
        for i, t in enumerate(self.tasks):
            _known(t.models, names, f"tasks[{i}].models", "models")
        return self

    @model_validator(mode="after")
    def _model_methods(self):
        labels = [m.label for m in self.methods]
        for i, model in enumerate(self.models):
            _known(model.methods, labels, f"models[{i}].methods", "methods")
            if model.quantization is not None:
                full = [m.label for m in self.methods if m.name == "full" and (model.methods is None or
                                                                               m.label in model.methods)]
                if full:
                    raise field_error(f"models[{i}].quantization", f"full fine-tuning ('{full[0]}') cannot train a "
                                      f"{model.quantization.describe()} base (its weights are frozen at that width); "
                                      f"list the adapter methods in models[{i}].methods, or drop quantization")
        return self

    @model_validator(mode="after")
    def _weighted(self):
        if self.train.class_weights is not None:
            for i, t in enumerate(self.tasks):
                if not getattr(registry.get("task", t.type), "weighted", False):
                    weighted = [n for n in registry.names("task") if getattr(registry.get("task", n), "weighted", False)]
                    raise field_error("train.class_weights", f"weights the loss of {', '.join(weighted)} tasks; "
                                     f"tasks[{i}] ('{t.name}') is {t.type}")
        return self

    @model_validator(mode="after")
    def _method_training(self):
        """A method's own training settings, and each training setting a sweep tries, checked as the grid's
        training settings with it."""
        for i, m in enumerate(self.methods):
            tries = [("train", m.train)] if m.train else []
            for name, values in (m.sweep.values() if m.sweep else {}).items():
                if name in SWEEPABLE_TRAIN and not (name in _option_fields(m.name)):
                    tries += [(f"sweep.{name}", {**m.train, name: v}) for v in values]
            for where, overrides in tries:
                try:
                    TrainSpec.model_validate({**self.train.model_dump(), **overrides})
                except ValidationError as err:
                    e = err.errors()[0]
                    field = ".".join(str(x) for x in e["loc"]) or where
                    raise field_error(f"methods[{i}].{where}" + (f" ({field})" if where == "train" else ""),
                                      message(e)) from None
        return self

    @model_validator(mode="after")
    def _baseline(self):
        if "baseline" in self.report.model_fields_set:
            known = [m.label for m in self.methods] + [m.name for m in self.methods]
            if self.report.baseline not in known:
                raise field_error("report.baseline", f"'{self.report.baseline}' is not a method of this grid; allowed: "
                                 f"{', '.join(dict.fromkeys(known))}")
        return self

    @model_validator(mode="after")
    def _unique(self):
        for what, items in (("models", [m.name for m in self.models]), ("methods", [m.label for m in self.methods]),
                            ("tasks", [t.name for t in self.tasks])):
            dup = {x for x in items if items.count(x) > 1}
            if dup:
                raise ValueError(f"{what}: duplicate name(s) {sorted(dup)}; give each entry a distinct "
                                 f"{'label' if what == 'methods' else 'name'}")
        return self


class RunSpec(_Spec):
    """One cell of a grid, fully resolved: a run is a pure function of this object."""

    model: ModelSpec
    method: MethodSpec
    task: TaskSpec
    train: TrainSpec
    seed: int

    @property
    def run_id(self) -> str:
        """The hash of the resolved config, less the train fields that cannot change a result and the fields
        added after results were first stored while they hold their defaults (so old stores keep their ids)."""
        return config_hash(identity(self.model_dump(mode="json")))

    @property
    def slug(self) -> str:
        parts = (self.model.name, self.method.label, self.task.name)
        return "__".join(map(safe_name, parts)) + f"__s{self.seed}__{self.run_id[:10]}"

    def lr(self) -> Optional[float]:
        """The configured learning rate (method over task over train), or None: the method's default for the
        model family, resolved when the model is loaded (each method's ``default_lr``)."""
        return self.method.lr or self.task.lr or self.train.lr

    def lr_source(self) -> str:
        return ("method" if self.method.lr else "task" if self.task.lr else "train" if self.train.lr else "default")

    def epochs(self) -> int:
        return self.task.epochs or self.train.epochs

    def epoch_cap(self) -> int:
        """The most epochs the run may train: ``train.extend_to`` where it is above ``epochs()``."""
        return max(self.epochs(), self.train.extend_to or 0)

    def patience(self) -> Optional[int]:
        """Epochs without a better validation score before stopping (the task's, else train's; 0/None: never)."""
        return self.task.patience if self.task.patience is not None else self.train.patience

    def max_length(self) -> int:
        return self.task.max_length or self.train.max_length


def identity(config: dict) -> dict:
    """What identifies a run's config (its id, its cell): the resolved config less what the marks of its fields
    leave out (``identity.strip``), the method's and the task type's options read by their own option models."""
    out = strip(RunSpec, config)
    method, task = out.get("method"), out.get("task")
    if isinstance(method, dict) and isinstance(method.get("options"), dict):
        method["options"] = _strip_options("method", method.get("name"), method["options"])
    data = task.get("data") if isinstance(task, dict) else None
    if isinstance(data, dict) and isinstance(data.get("options"), dict):
        task["data"] = {**data, "options": _strip_options("task", task.get("type"), data["options"])}
    return out


def _strip_options(kind: str, name, options: dict) -> dict:
    try:
        model = registry.options(kind, name)
    except (ValueError, TypeError):  # (an old stored config whose method or task is no longer registered)
        return options
    return strip(model, options) if model is not None else options


def features_fields(task: dict) -> dict:
    """The fields of a task's spec (a JSON dump) that its tokenised features depend on (marked ``FEATURES``)."""
    return {k: v for k, v in task.items() if FEATURES in TaskSpec.model_fields[k].metadata}


def combos(grid: GridSpec) -> list[tuple[ModelSpec, TaskSpec, MethodSpec]]:
    """(model, task, method) in the grid's stable order (a task's ``models`` and a model's ``methods`` restrict
    it)."""
    return [(m, t, me) for m in grid.models for t in grid.tasks if t.models is None or m.name in t.models
            for me in grid.methods if m.methods is None or me.label in m.methods]


def run_spec(model: ModelSpec, method: MethodSpec, task: TaskSpec, train: TrainSpec, seed: int) -> RunSpec:
    """One run: the grid's training settings with the method's own (``method.train``) over them."""
    if method.train:
        train = TrainSpec.model_validate({**train.model_dump(), **method.train})
    return RunSpec(model=model, method=method, task=task, train=train, seed=seed)


def expand(grid: GridSpec) -> list[RunSpec]:
    """The grid's runs in a stable order (model, task, method, seed); a method with a ``sweep`` gives one run
    per setting. A staged sweep (``sweep.seeds: k``) gives its first k seeds here; the others follow once the
    setting is chosen (``sweeps.follow_ups``)."""
    return [run_spec(m, v, t, grid.train, s)
            for m, t, me in combos(grid) for v in variants(me)
            for s in (grid.seeds[:me.sweep.seeds] if me.sweep and me.sweep.seeds else grid.seeds)]


def variants(method: MethodSpec) -> list[MethodSpec]:
    """The method once per setting of its sweep (every combination of the values listed, in the order given),
    each with the setting in ``point``; the method itself where it has no sweep; none for an optuna search."""
    if not method.sweep:
        return [method]
    if method.sweep.optuna is not None:  # its settings are drawn as trials finish (search.py)
        return []
    axes = method.sweep.axes()
    return [at_point(method, dict(zip(axes, combo))) for combo in itertools.product(*axes.values())]


def at_point(method: MethodSpec, point: dict[str, Any], **neutral) -> MethodSpec:
    """The method at one setting of its sweep (``lr``, its options, training settings), the setting in ``point``;
    ``neutral``: other fields that leave the run's identity alone (an optuna ``trial``, ``prune``)."""
    own = _option_fields(method.name)
    update: dict[str, Any] = {"point": point, **neutral}
    if "lr" in point:
        update["lr"] = point["lr"]
    options = {k: v for k, v in point.items() if k in own}
    if options:
        update["options"] = {**method.options, **options}
    train = {k: v for k, v in point.items() if k != "lr" and k not in own}
    if train:
        update["train"] = {**method.train, **train}
    return method.model_copy(update=update)


def _option_fields(method_name: str) -> tuple[str, ...]:
    model = registry.options("method", method_name)
    return tuple(model.model_fields) if model is not None else ()
