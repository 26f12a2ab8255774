"""Paired comparisons of each method against a baseline (full fine-tuning by default) on the same test
examples: the paired bootstrap over examples, pooled over seeds, with the verdict in words."""
from __future__ import annotations

import numpy as np

from .. import registry
from ..config import TaskSpec
from ..run.folder import RunFolder
from .aggregate import Cell
from .pes import PERCENT_METRICS
from .statistics import CONFUSION_METRICS, PairedResult, confusion_metric, paired_bootstrap


class _Scores:
    """What the bootstrap needs from a task: the validation metric of a resample, from stored predictions.
    Three ways, fastest first: a confusion matrix (single-label metrics), the mean of per-example scores
    (tasks with ``example_scores``, e.g. span QA), else the task's own ``compute_metrics``."""

    def __init__(self, run: dict):
        self.task = registry.get("task", run["task_type"])(TaskSpec.model_validate(run["config"]["task"]))
        self.metric = run["training"]["validation_metric"]
        self.calibration = run.get("calibration")
        self.prep = _StoredPrep(run)
        self.per_example = getattr(self.task, "example_scores", None)
        self.n_labels = max(len(self.prep.labels), 1)
        self.confusion = self.metric in CONFUSION_METRICS and not self.per_example

    def runs(self, cell: Cell) -> list[tuple[list, list]]:
        out = []
        for r in cell.runs:
            rows = RunFolder(r["folder"]).read_predictions("test")
            refs = [x["reference"] for x in rows]
            if self.confusion and all(isinstance(x.get("pred"), int) for x in rows):
                out.append((np.array([x["pred"] for x in rows]), np.array(refs)))
            elif self.per_example:  # a mean of per-example scores: resample the scores themselves
                scores = np.array(self.per_example(rows, refs)[self.metric])
                out.append((scores, scores))
            else:
                out.append((rows, refs))
        return out

    def __call__(self, predictions, references) -> float:
        if isinstance(predictions, np.ndarray) and self.per_example:
            return float(predictions.mean())
        if isinstance(predictions, np.ndarray):
            return confusion_metric(predictions, references, self.metric, self.n_labels)
        return self.task.compute_metrics(self.prep, predictions, references, self.calibration)[self.metric]


class _StoredPrep:
    """The parts of a task's Prepared that its metrics read, rebuilt from a stored result."""

    def __init__(self, run: dict):
        self.labels = tuple(run.get("labels") or ())
        self.extra = {"scheme": (run.get("data") or {}).get("scheme", "IOB2")}


def compare(cells: list[Cell], baseline: str = "full", resamples: int = 1000) -> list[tuple[Cell, PairedResult]]:
    """Each cell against the baseline cell (by method name) of the same model and task, where both have stored
    per-example test predictions over the same test data (same content hash)."""
    base = next((c for c in cells if c.method_name == baseline), None)
    if base is None or "config" not in base.first:
        return []
    scores = _Scores(base.first)
    base_runs = scores.runs(base)
    data = base.first["provenance"].get("data_sha256", {}).get("test")
    out = []
    for cell in cells:
        if cell is base or "config" not in cell.first:
            continue
        if data and cell.first["provenance"].get("data_sha256", {}).get("test") != data:
            continue  # not the same test examples: no paired comparison
        try:
            result = paired_bootstrap(scores, scores.runs(cell), base_runs, scores.metric, resamples=resamples)
        except (ValueError, FileNotFoundError):
            continue
        out.append((cell, result))
    return out


def verdict(cell: Cell, base_label: str, result: PairedResult) -> str:
    """e.g. "lora vs full: -1.20 macro_f1 (x100), 95% CI [-2.00, -0.40] (worse; ...)"."""
    scale = 1.0 if result.metric in PERCENT_METRICS else 100.0
    text = result.verdict(cell.label, base_label, scale=scale)
    return text if scale == 1.0 else text.replace(f" {result.metric},", f" {result.metric} (x100),", 1)
