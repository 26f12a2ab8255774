"""Inference cost of a trained run: what it adds on disk, how fast it answers one example at a time and at the
evaluation batch, and, where the method folds into the weights, the same with it merged.

Measured once the run's results are in (test scores, weights, memory reading), on the test split's first rows:
``BATCH1_ROWS`` examples one at a time and ``EVAL_BATCHES`` evaluation batches, each after a warm-up call. What
is timed is the task's forward pass (the scoring pass every task has; generative tasks' decoding is timed apart,
as ``timing.eval_seconds``). Merged and unmerged are measured side by side in one process, alternating
(unmerged, merged, unmerged, merged) so that a machine getting busier or quieter in between biases neither;
their ratio is the comparison to read, the absolute figures are this machine's. CPU time beside wall time says
whether the cores were shared while it was timed.
"""
from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..measure import Stopwatch, contention
from ..methods.adapter import ModelAdapter
from .batching import collator_for, to_device

BATCH1_ROWS = 32  # examples timed one at a time
EVAL_BATCHES = 4  # evaluation batches timed
ROUNDS = 2  # alternations of unmerged and merged


def folder_mb(path: Path) -> float | None:
    """Size of the files under ``path`` in MB (what the run saved: adapter + head, or all trainable weights)."""
    if not path.exists():
        return None
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 3)


def _batches(s, batch_size: int, rows: int) -> list[dict]:
    """The test split's first ``rows`` rows in batches of ``batch_size``, collated as evaluation collates them
    (each batch padded to its own longest row, or to max_length with ``train.padding: max_length``)."""
    data = s.prep.features["test"]
    data = data.select(range(min(len(data), rows)))
    loader = DataLoader(data, batch_size=batch_size, collate_fn=collator_for(s.prep, s.run.train, s.run.max_length()))
    return [to_device(batch, s.device) for batch in loader]


def _time(s, batches: list[dict], clock: Stopwatch) -> list[float]:
    """Seconds of each batch's forward pass, after a warm-up pass; CPU and wall time added to ``clock``."""
    adapter = ModelAdapter(s.model, s.method)
    sync = (lambda: torch.cuda.synchronize(s.device)) if s.device.type == "cuda" else (lambda: None)
    seconds = []
    with torch.inference_mode():
        s.task.forward(adapter, batches[0], s.prep)  # warm-up: lazy allocations, kernels chosen
        sync()
        with clock.section():
            for batch in batches:
                start = time.perf_counter()
                s.task.forward(adapter, batch, s.prep)
                sync()
                seconds.append(time.perf_counter() - start)
    return seconds


def _summary(seconds: list[float], rows: int, clock: Stopwatch, device, batch_size: int) -> dict:
    threads = torch.get_num_threads()
    return {"batch_size": batch_size, "rows": rows, "batches": len(seconds),
            "latency_ms_median": round(1000 * statistics.median(seconds), 3),
            "latency_ms_max": round(1000 * max(seconds), 3),
            "rows_per_second": round(rows / clock.wall, 2) if clock.wall else None,
            "wall_seconds": round(clock.wall, 4), "cpu_seconds": round(clock.cpu, 4),
            "contended": contention(clock, threads, device)["contended"]}


def measure(s, weights: Path) -> dict:
    """The run's inference cost (see the module's docstring)."""
    out = {"saved_mb": folder_mb(weights), "threads": torch.get_num_threads(), "device": str(s.device),
           "timed": "the task's forward pass on the test split's first rows"}
    eval_bs = s.run.train.eval_batch_size or 2 * s.run.train.batch_size
    sets = {"batch1": (1, _batches(s, 1, BATCH1_ROWS)), "eval_batch": (eval_bs, _batches(s, eval_bs, EVAL_BATCHES * eval_bs))}
    if not sets["batch1"][1]:
        return {**out, "skipped": "the test split is empty"}
    view = s.method.merged_view(s.model)
    settings = {"unmerged": nullcontext} | ({"merged": view} if view is not None else {})
    seconds = {(name, key): [] for name in settings for key in sets}
    clocks = {(name, key): Stopwatch() for name in settings for key in sets}
    s.model.eval()
    for _ in range(ROUNDS if view is not None else 1):  # unmerged, merged, unmerged, merged
        for name, enter in settings.items():
            with enter():
                for key, (_, batches) in sets.items():
                    seconds[name, key] += _time(s, batches, clocks[name, key])
    for name in settings:
        out[name] = {key: _summary(seconds[name, key], sum(s.task.batch_size(b) for b in batches) * len(seconds[name, key])
                                   // len(batches), clocks[name, key], s.device, size)
                     for key, (size, batches) in sets.items()}
    if view is not None:
        u, m = out["unmerged"], out["merged"]
        out["merged_speedup_batch1"] = round(u["batch1"]["latency_ms_median"] / m["batch1"]["latency_ms_median"], 3)
        out["merged_speedup_eval_batch"] = round(m["eval_batch"]["rows_per_second"] / u["eval_batch"]["rows_per_second"], 3)
    else:
        out["merge"] = s.method.merge_note
    return out
