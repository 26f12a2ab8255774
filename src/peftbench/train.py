"""One run: a pure function of its resolved ``RunSpec``, writing into its own folder.

Load data and model, apply the method, train with AdamW (early stopping on the validation metric,
optional random fraction of train per epoch), evaluate the best checkpoint on test, and write
``result.json`` (all measurements), ``curves.json``, ``predictions.jsonl`` (per-example test
predictions) and the trained weights (adapter + head, or all trainable weights).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import registry
from .config import RunSpec
from .measure import MemoryMeter, count_parameters, provenance
from .methods.base import MethodContext
from .models import load_model
from .tasks.base import Task


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is '{name}' but no CUDA device is available; use train.device=cpu")
    return torch.device(name)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise RuntimeError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return torch.autocast(device.type, dtype=dtype)


def _to(batch, device):
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def evaluate(model, loader, task, device, precision, split, show) -> dict:
    """Loss, metrics (overall and per evaluation group, e.g. language) and per-example predictions."""
    model.eval()
    preds, refs, loss_sum, n = [], [], 0.0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in tqdm(loader, desc=split, leave=False, disable=not show):
            batch = _to(batch, device)
            with _autocast(device, precision):
                _, out = task.forward(model, batch)
                preds += task.decode(out, batch, model)
            bs = task.batch_size(batch)
            loss_sum += float(task.loss(out, batch)) * bs
            n += bs
            refs += task.references(batch)
    preds, refs = task.finalize(split, preds, refs)
    seconds = time.perf_counter() - start
    result = {"loss": loss_sum / max(n, 1), "metrics": task.compute_metrics(preds, refs), "predictions": preds,
              "references": refs, "seconds": seconds, "samples": len(preds)}
    groups = sorted({p["group"] for p in preds if p.get("group") is not None})
    if groups:
        result["metrics_by_group"] = {
            g: {**task.compute_metrics([p for p in preds if p.get("group") == g],
                                       [r for p, r in zip(preds, refs) if p.get("group") == g]),
                "samples": sum(p.get("group") == g for p in preds)} for g in groups}
    return result


def export_merged(model, method, task, tokenizer, loader, device, folder: Path) -> dict:
    """Fold the adapter into the base weights, check the logits on a test batch, save the merged model."""
    model.eval()
    batch = _to(next(iter(loader)), device)
    with torch.no_grad():
        before = task.forward(model, batch)[1].logits.float()
        merged = method.merge(model)
        after = task.forward(merged, batch)[1].logits.float()
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(merged, "save_pretrained"):
        merged.save_pretrained(folder)
    else:  # a peftbench head wrapper: plain weights
        from safetensors.torch import save_model

        save_model(merged, str(folder / "model.safetensors"))
    tokenizer.save_pretrained(folder)
    return {"max_abs_logit_diff": float((before - after).abs().max()), "batch_size": len(before), "folder": "merged"}


def execute(run: RunSpec, run_dir: Path, show_progress: bool = True) -> dict:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    if run.train.threads:
        torch.set_num_threads(run.train.threads)
    device = pick_device(run.train.device)
    set_seed(run.seed)
    meter = MemoryMeter(device)

    task = registry.get("task", run.task.type)(run.task)
    raw, data_report = task.load()
    model, tokenizer, model_info = load_model(run.model, task.auto_class, task.config_updates())
    task.tokenizer = tokenizer
    feats = task.prepare(raw, tokenizer, run.max_length())
    collate = task.collator(tokenizer)

    tr = run.train
    n_train = len(feats["train"])
    per_epoch = max(1, int(round(n_train * tr.epoch_fraction)))
    steps_per_epoch = math.ceil(math.ceil(per_epoch / tr.batch_size) / tr.grad_accum)
    epochs = run.epochs()
    total_steps = steps_per_epoch * epochs

    method = registry.get("method", run.method.name)()
    ctx = MethodContext(family=model_info["family"], model_type=model_info["model_type"],
                        head_modules=task.head_modules(model), peft_task_type=task.peft_task_type,
                        total_steps=total_steps)
    model = method.apply(model, run.method, ctx)
    params = count_parameters(model)
    model.to(device)

    trainable = [p for p in model.parameters() if p.requires_grad]
    lr = run.lr() or type(method).lr_for(model_info["family"])
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=tr.weight_decay)
    from transformers import get_scheduler

    scheduler = get_scheduler(tr.scheduler, optimizer, num_warmup_steps=int(tr.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    eval_bs = tr.eval_batch_size or tr.batch_size
    val_loader = DataLoader(feats["validation"], batch_size=eval_bs, collate_fn=collate)
    test_loader = DataLoader(feats["test"], batch_size=eval_bs, collate_fn=collate)
    metric = task.metric
    rng = np.random.default_rng(run.seed)

    curves, best, best_state, bad_epochs, step = [], -math.inf, None, 0, 0
    train_seconds = eval_seconds = 0.0
    eval_samples = 0
    samples_seen = tokens_seen = 0
    stopped_early = False
    bar = tqdm(total=total_steps, desc=f"{run.method.label} {run.model.name}/{run.task.name} s{run.seed}",
               disable=not show_progress, leave=False)
    if tr.eval_before_training:  # where the curves start: the untrained model (or adapter at its init)
        val = evaluate(model, val_loader, task, device, tr.precision, "validation", show_progress)
        eval_seconds += val["seconds"]
        eval_samples += val["samples"]
        curves.append({"epoch": 0, "step": 0, "train_loss": None, "train_objective": None, "val_loss": val["loss"],
                       "val_metrics": val["metrics"], **method.state(model)})
    for epoch in range(1, epochs + 1):
        model.train()
        idx = rng.permutation(n_train)[:per_epoch].tolist()
        g = torch.Generator().manual_seed(run.seed * 1000 + epoch)
        loader = DataLoader(feats["train"].select(idx), batch_size=tr.batch_size, shuffle=True,
                            collate_fn=collate, generator=g)
        loss_sum = objective_sum = n_seen = 0.0
        t0 = time.perf_counter()
        for i, batch in enumerate(loader):
            batch = _to(batch, device)
            with _autocast(device, tr.precision):
                loss, out = task.forward(model, batch)
                if task.loss_outside_model:
                    loss = loss + method.regulariser(model)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {step}; "
                                         "lower the learning rate or use fp32")
            (loss / tr.grad_accum).backward()
            bs = task.batch_size(batch)
            loss_sum += task.loss(out, batch).item() * bs
            objective_sum += loss.item() * bs
            n_seen += bs
            samples_seen += bs
            tokens_seen += int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
            if (i + 1) % tr.grad_accum == 0 or i + 1 == len(loader):
                if tr.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trainable, tr.max_grad_norm)
                optimizer.step()
                step += 1
                method.after_step(model, step)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - t0

        val = evaluate(model, val_loader, task, device, tr.precision, "validation", show_progress)
        eval_seconds += val["seconds"]
        eval_samples += val["samples"]
        score = val["metrics"][metric]
        curves.append({"epoch": epoch, "step": step, "train_loss": loss_sum / max(n_seen, 1),
                       "train_objective": objective_sum / max(n_seen, 1), "val_loss": val["loss"],
                       "val_metrics": val["metrics"], **method.state(model)})
        if score > best:
            best, bad_epochs = score, 0
            best_state = {"epoch": epoch, "weights": {n: p.detach().to("cpu", copy=True)
                                                      for n, p in model.named_parameters() if p.requires_grad}}
        else:
            bad_epochs += 1
            if tr.patience and bad_epochs >= tr.patience and epoch < epochs:
                stopped_early = True
                break
    bar.close()

    # restore the best epoch's trainable weights (AdaLoRA masks live in lora_E, which is among them)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, w in best_state["weights"].items():
            named[n].copy_(w.to(named[n].device))
    calibration = None
    if type(task).calibrate is not Task.calibrate:  # fit thresholds etc. on the best checkpoint's validation
        val = evaluate(model, val_loader, task, device, tr.precision, "validation", show_progress)
        eval_seconds += val["seconds"]
        eval_samples += val["samples"]
        calibration = task.calibrate(val)
    test = evaluate(model, test_loader, task, device, tr.precision, "test", show_progress)
    eval_seconds += test["seconds"]
    eval_samples += test["samples"]
    memory = meter.read()

    method.save(model, run_dir / "weights")
    merge_check = export_merged(model, method, task, tokenizer, test_loader, device, run_dir / "merged") \
        if tr.export_merged else None
    with open(run_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for i, (p, r) in enumerate(zip(test["predictions"], test["references"])):
            f.write(json.dumps({"index": i, "reference": r, **p}, ensure_ascii=False) + "\n")

    result = {
        "run_id": run.run_id, "slug": run.slug, "model": run.model.name, "method": run.method.label,
        "method_name": run.method.name, "sweep": run.method.sweep.model_dump() if run.method.sweep else None, "task": run.task.name, "task_type": run.task.type, "seed": run.seed,
        "parameters": params, "memory": memory,
        "timing": {"train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                   "wall_seconds": round(time.time() - t_start, 3),
                   "train_samples_per_second": samples_seen / train_seconds if train_seconds else None,
                   "train_tokens_per_second": tokens_seen / train_seconds if train_seconds else None,
                   "eval_samples_per_second": eval_samples / eval_seconds
                   if eval_seconds else None},
        "training": {"lr": lr, "lr_source": run.lr_source(), "epochs_planned": epochs, "epochs_run": sum(c["epoch"] > 0 for c in curves), "best_epoch": best_state["epoch"],
                     "stopped_early": stopped_early, "optimizer_steps": step, "steps_planned": total_steps,
                     "samples_per_epoch": per_epoch, "samples_seen": samples_seen, "tokens_seen": tokens_seen,
                     "validation_metric": metric, "best_validation": best},
        "test": {"loss": test["loss"], "metrics": test["metrics"], "samples": test["samples"],
                 **({"metrics_by_group": test["metrics_by_group"]} if "metrics_by_group" in test else {})},
        "calibration": calibration, "metric_info": task.metric_info,
        "curves": curves, "method_notes": ctx.notes, "merge_check": merge_check, "model_info": model_info, "data": data_report,
        "labels": task.labels, "pes_weights": run.task.pes_weights or task.pes_weights,
        "provenance": {**provenance(device), "seed": run.seed, "config_hash": run.run_id,
                                              "pid": os.getpid(), "started": t_start, "finished": time.time()},
    }
    return result
