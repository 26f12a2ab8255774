"""What a finished run measured: a typed ``RunResult`` beside ``RunSpec``, written as ``result.json`` and kept
in the store. The sections the store, the report, sweeps and the runner read are typed; the rest (curves, data
and model reports, provenance, a method's notes) are kept as written. Fields a section does not name are kept
too (``extra="allow"``), so a ``result.json`` from an older or newer peftbench loads and writes back unchanged.
``VERSION`` counts changes of this layout; a file without one is version 1."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class Parameters(_Section):
    trainable: int = 0
    non_trainable: int = 0
    total: int = 0
    trainable_pct: float = 0.0


Megabytes = Optional[float]  # MiB (2**20 bytes)
Seconds = Optional[float]  # wall-clock seconds unless the name says cpu
PerSecond = Optional[float]  # samples or tokens a second
Count = Optional[int]


class Memory(_Section):
    peak_memory_mb: Megabytes = None   # CUDA peak allocated, else the process's peak RSS
    peak_memory_kind: Optional[str] = None   # which of the two
    peak_rss_mb: Megabytes = None
    rss_baseline_mb: Megabytes = None
    peak_rss_delta_mb: Megabytes = None


class Timing(_Section):
    train_seconds: Seconds = None
    train_cpu_seconds: Seconds = None
    eval_seconds: Seconds = None
    eval_cpu_seconds: Seconds = None
    wall_seconds: Seconds = None
    train_samples_per_second: PerSecond = None
    train_tokens_per_second: PerSecond = None
    eval_samples_per_second: PerSecond = None
    processes: Count = None
    threads: Count = None
    cores: Count = None
    cpu_share: Optional[float] = None
    cpu_share_per_thread: Optional[float] = None
    load_mean: Optional[float] = None
    load_max: Optional[float] = None
    contended: bool = False               # the cores were shared with other work: kept out of clean timings


class Training(_Section):
    lr: Optional[float] = None
    lr_source: Optional[str] = None
    epochs_planned: Optional[int] = None
    epochs_run: Optional[int] = None
    best_epoch: Optional[int] = None
    stopped_early: Optional[bool] = None
    optimizer_steps: Optional[int] = None
    validation_metric: Optional[str] = None
    best_validation: Optional[float] = None
    resumed_after: Optional[list[int]] = None  # train.checkpoint_every: the epochs after which a killed run went on
    pruned_at: Optional[int] = None  # an optuna trial the median pruner stopped after this epoch (never chosen)


class Test(_Section):
    loss: Optional[float] = None
    metrics: dict[str, Any] = Field(default_factory=dict)  # numbers (None where undefined), kept as computed
    samples: Optional[int] = None
    metrics_by_group: Optional[dict[str, dict[str, Any]]] = None

    def metric(self, name: Optional[str]) -> Optional[float]:
        return self.metrics.get(name) if name else None


class Speed(_Section):
    batch_size: Optional[int] = None
    rows: Optional[int] = None                # rows timed (over every pass)
    batches: Optional[int] = None
    latency_ms_median: Optional[float] = None  # one batch's forward pass
    latency_ms_max: Optional[float] = None
    rows_per_second: Optional[float] = None
    wall_seconds: Optional[float] = None
    cpu_seconds: Optional[float] = None
    contended: bool = False


class Setting(_Section):
    batch1: Speed = Field(default_factory=Speed)
    eval_batch: Speed = Field(default_factory=Speed)


class Inference(_Section):
    """``train.inference_cost``: what the run saved, and its forward pass's speed (run/inference.py)."""
    saved_mb: Optional[float] = None
    threads: Optional[int] = None
    device: Optional[str] = None
    unmerged: Optional[Setting] = None
    merged: Optional[Setting] = None           # where the method folds into the weights
    merged_speedup_batch1: Optional[float] = None  # unmerged / merged batch-1 latency, measured side by side
    merged_speedup_eval_batch: Optional[float] = None  # merged / unmerged eval-batch throughput
    merge: Optional[str] = None                # why there is no merged measurement
    skipped: Optional[str] = None


class RunResult(BaseModel):
    """One run's measurements. ``RunResult.load(dict)`` reads any result.json; ``to_json()`` writes it."""
    model_config = ConfigDict(extra="allow")

    version: int = VERSION
    run_id: str = ""
    slug: str = ""
    model: str = ""
    method: str = ""          # the method's label (its name unless a grid names two variants)
    method_name: str = ""
    sweep: Optional[dict[str, Any]] = None
    sweep_point: Optional[dict[str, Any]] = None  # the sweep's setting this run ran (e.g. {lr: 3e-4, r: 8})
    sweep_trial: Optional[int] = None  # an optuna search's trial number
    task: str = ""
    task_type: str = ""
    seed: int = 0
    parameters: Parameters = Field(default_factory=Parameters)
    memory: Memory = Field(default_factory=Memory)
    timing: Timing = Field(default_factory=Timing)
    training: Training = Field(default_factory=Training)
    test: Test = Field(default_factory=Test)
    labels: list[Any] = Field(default_factory=list)
    curves: list[dict[str, Any]] = Field(default_factory=list)  # one point an epoch (epoch 0: before training)
    pes_weights: Optional[dict[str, Any]] = None
    # kept as written: read by name where needed
    calibration: Optional[dict[str, Any]] = None
    metric_info: dict[str, Any] = Field(default_factory=dict)
    method_notes: dict[str, Any] = Field(default_factory=dict)
    merge_check: Optional[dict[str, Any]] = None
    model_info: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)       # what was loaded: sources, caps, rows, hashes
    provenance: dict[str, Any] = Field(default_factory=dict)  # versions, commit, hardware, seed, config hash
    analysis: Optional[dict[str, Any]] = None                 # train.analysis: intruder dimensions, forgetting
    inference: Optional[Inference] = None                     # train.inference_cost
    # added by the store when asked for them, never written to result.json
    config: Optional[dict[str, Any]] = Field(None, exclude=True)
    folder: Optional[str] = Field(None, exclude=True)

    @classmethod
    def load(cls, data: "dict | RunResult") -> "RunResult":
        return data if isinstance(data, RunResult) else cls.model_validate({"version": 1, **data})

    def to_json(self) -> dict:
        """What result.json holds: the fields it was given (a loaded file writes back as it was, plus ``version``)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def compute_seconds(self) -> Optional[float]:
        """What the run cost to train and evaluate, as tuning budgets are compared: GPU-seconds on a GPU (wall
        seconds times processes), CPU-seconds on CPU (every thread's time); None where not measured."""
        t = self.timing
        if (self.memory.peak_memory_kind or "").startswith("cuda"):
            if t.train_seconds is None:
                return None
            return (t.train_seconds + (t.eval_seconds or 0.0)) * (t.processes or 1)
        if t.train_cpu_seconds is None:
            return None
        return t.train_cpu_seconds + (t.eval_cpu_seconds or 0.0)

    @property
    def score(self) -> Optional[float]:
        """The test score on the run's own validation metric."""
        return self.test.metric(self.training.validation_metric)
