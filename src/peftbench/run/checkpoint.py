"""Resuming inside a run (``train.checkpoint_every: epoch``).

After each epoch the run saves what the rest of it depends on into its folder's ``checkpoint/``: the trainable
weights and the buffers, the optimizer's and the schedule's state, a method's own state (AdaLoRA's importance
scores and rank pattern), every random generator (torch, CUDA, numpy's epoch sampler, Python's), the loop's
bookkeeping (curves, the best epoch's weights and validation, epochs without improvement, steps, samples,
tokens, clocks) and the memory reading so far. A run whose process was killed is started again by the grid
with the same config; it loads the data and the model as usual, puts this state back and goes on with the next
epoch, so it ends with the metrics an uninterrupted run gets. The file is written to a temporary name and
renamed: a kill while saving leaves the previous checkpoint. The folder is removed when the run has written
its result, unless ``train.keep_checkpoints``.

What a resumed run does not count: the work after its last checkpoint that the kill lost (its clocks hold the
epochs it kept), and the memory peak of that lost work.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..measure import PEAKS

FILE = "state.pt"
FORMAT = 1  # the layout of the saved state: a checkpoint of another layout is not resumed from


def save(s, folder: Path, epoch: int, rng: np.random.Generator, loop: dict[str, Any]) -> Path:
    """The run's state after ``epoch`` (``loop``: the loop's own variables), atomically into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = s.model
    state = {
        "format": FORMAT, "run_id": s.run.run_id, "epoch": epoch,
        "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
        "buffers": {n: b.detach().cpu() for n, b in model.named_buffers()},
        "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
        "method": s.method.checkpoint_state(model),
        "rng": {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state, "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if s.device.type == "cuda" else None},
        "tally": {"steps": s.tally.steps, "samples": s.tally.samples, "tokens": s.tally.tokens,
                  "eval_samples": s.tally.eval_samples, "metric_info": s.tally.metric_info,
                  "train_clock": vars(s.tally.train_clock).copy(), "eval_clock": vars(s.tally.eval_clock).copy()},
        "memory": s.meter.read(),
        "loop": loop,
    }
    tmp = folder / f"{FILE}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / FILE)
    return folder / FILE


def load(s, folder: Path) -> dict | None:
    """The saved state of this run in ``folder``, or None (no checkpoint, another run's, another layout)."""
    path = folder / FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a damaged checkpoint: start over rather than fail the run
        return None
    if state.get("format") != FORMAT or state.get("run_id") != s.run.run_id:
        return None
    return state


def restore(s, state: dict, rng: np.random.Generator) -> dict:
    """Put ``state`` back into the run ``s`` and its epoch sampler ``rng``; returns the loop's variables."""
    model = s.model
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value.to(params[name].device))
        for name, value in state["buffers"].items():
            if name in buffers:
                buffers[name].copy_(value.to(buffers[name].device))
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    s.method.restore_checkpoint_state(model, state["method"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and s.device.type == "cuda":
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    rng.bit_generator.state = state["rng"]["numpy"]
    random.setstate(state["rng"]["python"])
    tally, saved = s.tally, state["tally"]
    tally.steps, tally.samples, tally.tokens = saved["steps"], saved["samples"], saved["tokens"]
    tally.eval_samples = saved["eval_samples"]
    tally.metric_info.update(saved["metric_info"])
    for clock, values in ((tally.train_clock, saved["train_clock"]), (tally.eval_clock, saved["eval_clock"])):
        for key, value in values.items():
            setattr(clock, key, value)
    return state["loop"]


def merge_memory(before: dict, now: dict) -> dict:
    """A resumed run's memory: each peak the larger of the process that saved the checkpoint and this one."""
    out = dict(now)
    for key in PEAKS:
        if key in before and key in now:
            out[key] = max(before[key], now[key])
    return out
