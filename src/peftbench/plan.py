"""``peftbench plan grid.yaml``: know a grid's cost before paying it.

For each (model, method, task) of the grid, a fresh process loads data and model as the run will and trains a
few optimizer steps: on a random sample of batches (time per step), and on the longest batches (peak memory).
A few evaluation batches give the time per evaluated example. From these, per run: peak memory (the training
peak, plus the best epoch's copy of the trainable weights that early stopping keeps), time per epoch, time of
the run; for the grid: the total over seeds and learning-rate variants. Runs that would not fit this device's
memory are marked, with what would make them fit. Times are upper bounds where early stopping ends runs early.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from . import search
from .config import GridSpec, RunSpec, at_point, expand, run_spec
from .sweeps import staged


def profile(run: RunSpec, steps: int) -> dict:
    """Measure one run's costs on ``steps`` optimizer steps (in this process; its memory is the run's)."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from .measure import peak_rss_mb
    from .run.batching import collator_for, eval_loader, lengths
    from .run.recipe import forward_backward, optimizer_step, setup, to_device

    t0 = time.perf_counter()
    s = setup(run, show=False)
    setup_seconds = time.perf_counter() - t0
    tr, prep = run.train, s.prep
    train = prep.features["train"]
    bs = tr.batch_size * tr.grad_accum  # rows per optimizer step
    n = min(len(train), steps * bs)
    rows = lengths(train)
    typical = np.random.default_rng(run.seed).permutation(len(train))[:n].tolist()
    longest = sorted(range(len(train)), key=rows.__getitem__, reverse=True)[:n]
    trainable = [p for p in s.model.parameters() if p.requires_grad]
    collate = collator_for(prep, tr, run.max_length())

    def train_on(indices) -> tuple[float, int]:
        s.model.train()
        loader = DataLoader(train.select(indices), batch_size=tr.batch_size, collate_fn=collate)
        done, start = 0, time.perf_counter()
        for i, batch in enumerate(loader):
            forward_backward(s, to_device(batch, s.device), check=False)
            if (i + 1) % tr.grad_accum == 0 or i + 1 == len(loader):
                done += 1
                optimizer_step(s, trainable, done)
        if s.device.type == "cuda":
            torch.cuda.synchronize(s.device)
        return time.perf_counter() - start, done

    train_on(typical[:bs])  # warm-up: first-call allocations and kernel choices are not typical
    seconds, done = train_on(typical)
    train_on(longest)  # the peak: the longest rows, padded to their length
    s.model.eval()
    evaluated, start = 0, time.perf_counter()
    with torch.inference_mode():
        for i, batch in enumerate(eval_loader(prep, tr, run.max_length(), "validation")):
            if i == 4:
                break
            s.task.forward(s.adapter, to_device(batch, s.device), prep)
            evaluated += s.task.batch_size(batch)
        eval_per_example = (time.perf_counter() - start) / max(evaluated, 1)
        val = prep.features["validation"]  # evaluation's peak: one batch of its longest rows (a larger batch)
        val_rows = lengths(val)
        eval_batch = tr.eval_batch_size or 2 * tr.batch_size
        worst = sorted(range(len(val)), key=val_rows.__getitem__, reverse=True)[:eval_batch]
        for batch in DataLoader(val.select(worst), batch_size=eval_batch, collate_fn=collate):
            s.task.forward(s.adapter, to_device(batch, s.device), prep)
    memory = s.meter.read()
    keep_mb = sum(p.numel() * p.element_size() for p in trainable) / 2**20  # BestKeeper's copy (CPU)
    sizes = {split: len(ds) for split, ds in prep.features.items()}
    step_seconds = seconds / max(done, 1)
    epoch_seconds = step_seconds * s.steps_per_epoch + eval_per_example * sizes["validation"]
    return {"model": run.model.name, "method": run.method.label, "task": run.task.name,
            "device": s.device.type, "trainable": s.parameters["trainable"], "steps_profiled": done,
            "step_seconds": step_seconds, "steps_per_epoch": s.steps_per_epoch, "epochs": run.epochs(),
            "epoch_seconds": epoch_seconds, "setup_seconds": setup_seconds, "eval_seconds_per_example": eval_per_example,
            "run_seconds": setup_seconds + run.epochs() * epoch_seconds + eval_per_example * sizes["test"],
            "peak_memory_mb": memory["peak_memory_mb"] + (keep_mb if s.device.type == "cpu" else 0),
            "peak_memory_kind": memory["peak_memory_kind"], "best_copy_mb": keep_mb,
            "profile_peak_rss_mb": peak_rss_mb(), "batch_size": tr.batch_size, "grad_accum": tr.grad_accum,
            "precision": tr.precision, "gradient_checkpointing": tr.gradient_checkpointing}


def memory_budget_mb(device: str) -> float:
    """What a run may use: 90% of the GPU's memory, or of this machine's RAM (``PEFTBENCH_MEMORY_BUDGET_MB``
    overrides)."""
    if os.environ.get("PEFTBENCH_MEMORY_BUDGET_MB"):
        return float(os.environ["PEFTBENCH_MEMORY_BUDGET_MB"])
    if device == "cuda":
        import torch

        return 0.9 * torch.cuda.get_device_properties(0).total_memory / 2**20
    import psutil

    return 0.9 * psutil.virtual_memory().total / 2**20


def advice(row: dict) -> str:
    """What would make a run fit: halve the batch (same effective batch), recompute activations, bf16 on GPU."""
    tips = []
    if row["batch_size"] > 1:
        tips.append(f"train.batch_size={row['batch_size'] // 2} train.grad_accum={row['grad_accum'] * 2}")
    if not row["gradient_checkpointing"]:
        tips.append("train.gradient_checkpointing=true")
    if row["device"] == "cuda" and row["precision"] == "fp32":
        tips.append("train.precision=bf16")
    return " or ".join(tips) or "a smaller model or max_length"


def plan(grid: GridSpec, steps: int = 3, echo=print) -> dict:
    """Profile each (model, method, task) in its own process; predict every run of the grid."""
    rows = _in_processes(grid, lambda run: ["peftbench.plan", run.model_dump_json(), str(steps)],
                         f"profiling {{}} ({steps} steps)", echo)
    for row in rows:
        if "error" in row:
            continue
        row["grid_seconds"] = row["run_seconds"] * row["runs"]
        row["budget_mb"] = memory_budget_mb(row["device"])
        row["fits"] = row["peak_memory_mb"] <= row["budget_mb"]
        if not row["fits"]:
            row["advice"] = advice(row)
    total = sum(r.get("grid_seconds", 0) for r in rows)
    later = sum(len(seeds) for *_, seeds in staged(grid)) + search.count(grid)
    return {"grid": grid.name, "runs": len(expand(grid)) + later, "rows": rows, "total_seconds": total,
            "note": "times are upper bounds where early stopping ends runs early; memory is the process's peak RSS "
                    "on CPU and peak allocated memory on CUDA"}


def _combos(grid: GridSpec) -> dict[tuple, list[RunSpec]]:
    """(model, method name, method label, task) -> its runs, the staged sweeps' later seeds included (they cost
    what the compared ones do)."""
    combos: dict[tuple, list[RunSpec]] = {}
    for r in expand(grid):
        combos.setdefault((r.model.name, r.method.name, r.method.label, r.task.name), []).append(r)
    for m, t, me, first, seeds in search.searches(grid):  # an optuna search: its first draw stands for its trials
        spec = me.sweep.optuna
        run = run_spec(m, at_point(me, search.draw(spec, [], 0)), t, grid.train, first[0])
        combos[(m.name, me.name, me.label, t.name)] = [run] * (spec.trials * len(first) + len(seeds))
    later = {(m.name, me.name, me.label, t.name): len(seeds) for m, t, me, _, seeds in staged(grid)}
    return {key: members + members[:1] * later.get(key, 0) for key, members in combos.items()}


def _in_processes(grid: GridSpec, argv, say: str, echo) -> list[dict]:
    """One row per (model, method, task): ``python -m argv(run)`` in its own process, its last stdout line read as
    JSON (or its last error line), with the number of runs it stands for."""
    rows = []
    for key, members in _combos(grid).items():
        echo(say.format(f"{key[0]} / {key[2]} / {key[3]}"))
        proc = subprocess.run([sys.executable, "-m", *argv(members[0])], capture_output=True, text=True,
                              env=dict(os.environ, PEFTBENCH_PROGRESS="0"))
        if proc.returncode:
            lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
            rows.append({"model": key[0], "method": key[2], "task": key[3], "runs": len(members),
                         "error": lines[-1][:300] if lines else f"exit code {proc.returncode}"})
            continue
        rows.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "runs": len(members)})
    return rows


def plan_target(grid: GridSpec, target, echo=print) -> dict:
    """Each (model, method, task) of the grid on ``target`` (``footprint.Target``), each in its own process:
    predicted peak GPU memory by component, whether it fits, the cheapest change where it does not."""
    rows = _in_processes(grid, lambda run: ["peftbench.footprint", run.model_dump_json(), target.name],
                         f"sizing {{}} for {target.name}", echo)
    return {"grid": grid.name, "target": target.name, "budget_mb": target.budget_mb, "rows": rows,
            "note": "peak memory PyTorch allocates on the GPU (weights, gradients, optimizer state counted from the "
                    "shapes; activations measured on CPU on 1- and 2-block copies, scaled); the CUDA context and "
                    "allocator fragmentation are not included"}


def _error_row(r: dict, columns: int) -> str:
    """A table row for a (model, method, task) that could not be sized: its four names, dashes, the error last."""
    return (f"| {r['model']} | {r['method']} | {r['task']} | {r['runs']} | " + "– | " * (columns - 5)
            + f"error: {r['error']} |")


def target_table(result: dict) -> str:
    head = ("| Model | Method | Task | Runs | Weights | Gradients | Optimizer | Activations | Peak (GB) | Fits "
            f"{result['target']} |")
    lines = [head, "|" + "---|" * 10]
    for r in result["rows"]:
        if "error" in r:
            lines.append(_error_row(r, 10))
            continue
        p = {k: v / 1024 for k, v in r["predicted_mb"].items()}
        fits = "yes" if r["fits"] else f"no: {r['change']}" + (
            f" (→ {r['predicted_after_mb'] / 1024:.1f} GB)" if r.get("predicted_after_mb") else "")
        lines.append(f"| {r['model']} | {r['method']} | {r['task']} | {r['runs']} | {p['weights']:.2f} | "
                     f"{p['gradients']:.2f} | {p['optimizer']:.2f} | {p['activations']:.2f} | {p['total']:.2f} | {fits} |")
    lines.append(f"\nbudget: 90% of {result['target']} = {result['budget_mb'] / 1024:.1f} GB; {result['note']}.")
    return "\n".join(lines)


def table(result: dict) -> str:
    head = "| Model | Method | Task | Runs | Trainable | Peak memory (MB) | s / step | Epoch | Run | Grid | Fits |"
    lines = [head, "|" + "---|" * 11]
    for r in result["rows"]:
        if "error" in r:
            lines.append(_error_row(r, 11))
            continue
        fits = "yes" if r["fits"] else f"no (> {r['budget_mb']:.0f} MB): {r['advice']}"
        lines.append(f"| {r['model']} | {r['method']} | {r['task']} | {r['runs']} | {r['trainable']:,} | "
                     f"{r['peak_memory_mb']:.0f} | {r['step_seconds']:.2f} | {_dur(r['epoch_seconds'])} | "
                     f"{_dur(r['run_seconds'])} | {_dur(r['grid_seconds'])} | {fits} |")
    lines.append(f"\n{result['runs']} run(s), predicted total {_dur(result['total_seconds'])}; {result['note']}.")
    return "\n".join(lines)


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":  # one profile, in its own process: python -m peftbench.plan RUN_JSON STEPS
    from .run.worker import quiet_libraries

    quiet_libraries()
    print(json.dumps(profile(RunSpec.model_validate_json(sys.argv[1]), int(sys.argv[2]))))
