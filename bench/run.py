"""peftbench's own benchmark: four ratios, each measured side by side in one invocation, the sides interleaved
(A B A B ...) in fresh processes, with the median ratio, its spread and CPU time next to wall time.

    python bench/run.py                      # me5-small + LoRA on ParsiNLU food (needs ../shared and the model)
    python bench/run.py --reps 3 --steps 20  # (defaults)

1. engine overhead: peftbench's training loop vs a plain PyTorch + peft loop (same model, method, data, batches,
   lengths, seed, threads): training throughput ratio and peak-memory ratio
2. peftbench vs Hugging Face ``Trainer`` with the same settings and the same batches: training throughput ratio
3. dynamic padding (peftbench's default) vs the studies' fixed padding (``train.padding: max_length``, 150):
   throughput ratio, and the test metric of one epoch trained each way
4. a second run's preparation with the features cache vs without it

Not a test: timings depend on the machine; ``docs/performance.md`` holds the latest figures and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = Path(os.environ.get("PEFTBENCH_MODELS", "~/.cache/peftbench-models")).expanduser() / "me5-small"
LABEL_MAP = {"-2": "negative", "-1": "negative", "1": "positive", "2": "positive", "0": None, "3": None}


def grid(out: str, **train) -> dict:
    return {"name": "bench", "output_dir": out, "models": [{"source": str(MODEL), "name": "me5-small"}],
            "methods": ["lora"], "seeds": [42],
            "tasks": [{"name": "food", "type": "classification", "max_length": 150, "lr": 5e-4, "epochs": 1,
                       "data": {"source": "recipe:parsinlu_food_binary", "label_map": LABEL_MAP}}],
            "train": {"batch_size": 32, "patience": None, "threads": THREADS, **train}}


def usage() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    from peftbench.measure import peak_rss_mb as measured  # VmHWM: this process's own peak, whatever its parent

    return measured()


# ------------------------------------------------------------------------------------------- the sides

def side_peftbench(steps: int, padding: str = "dynamic") -> dict:
    """peftbench's own loop (run.recipe.train_epoch) over ``steps`` optimizer steps."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from peftbench.config import expand, load_grid
    from peftbench.run.recipe import setup, train_epoch

    run = expand(load_grid(data=grid("/tmp/peftbench-bench", padding=padding)))[0]
    s = setup(run, show=False)
    s.samples_per_epoch = steps * run.train.batch_size
    counters = {"steps": 0, "samples": 0, "tokens": 0}
    cpu0 = usage()
    train_epoch(s, 1, np.random.default_rng(run.seed), tqdm(disable=True), counters)
    return {"seconds": s.train_clock.wall, "cpu_seconds": usage() - cpu0, "samples": counters["samples"],
            "steps": counters["steps"], "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}


def _plain_setup(steps: int):
    """What a user writes by hand: tokenizer, model, peft LoRA (the same targets), the same rows and batches."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, set_seed

    from peftbench.config import DataSpec
    from peftbench.data.recipes import parsinlu_food_binary

    torch.set_num_threads(THREADS)
    set_seed(42)
    raw = parsinlu_food_binary(DataSpec(source="recipe:parsinlu_food_binary"))["train"]
    raw = raw.filter(lambda v: LABEL_MAP[v] is not None, input_columns="label")
    labels = sorted({LABEL_MAP[v] for v in raw["label"]})
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=len(labels))
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=32, lora_dropout=0.1,
                                             target_modules=["query", "value"]))
    feats = raw.map(lambda b: {**tok(b["text"], truncation=True, max_length=150),
                               "labels": [labels.index(LABEL_MAP[v]) for v in b["label"]]},
                    batched=True, remove_columns=raw.column_names)
    idx = np.random.default_rng(42).permutation(len(feats))[:steps * 32].tolist()
    return model, tok, feats.select(idx), DataCollatorWithPadding(tok)


def side_plain(steps: int) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    model, tok, data, collate = _plain_setup(steps)
    loader = DataLoader(data, batch_size=32, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(42 * 1000 + 1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, weight_decay=0.01)
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=steps)
    model.train()
    cpu0, t0, n = usage(), time.perf_counter(), 0
    for batch in loader:
        loss = torch.nn.functional.cross_entropy(model(**{k: v for k, v in batch.items() if k != "labels"}).logits,
                                                 batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        n += len(batch["labels"])
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": usage() - cpu0, "samples": n, "steps": steps,
            "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}


def side_trainer(steps: int) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    model, tok, data, collate = _plain_setup(steps)
    args = TrainingArguments(output_dir="/tmp/peftbench-bench-trainer", per_device_train_batch_size=32, max_steps=steps,
                             learning_rate=5e-4, weight_decay=0.01, lr_scheduler_type="linear", max_grad_norm=1.0,
                             logging_strategy="no", save_strategy="no", report_to=[], seed=42, use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True)
    from torch.utils.data import DataLoader

    class SameBatches(Trainer):  # the batches of the other sides, so padding work is identical
        def get_train_dataloader(self):
            return DataLoader(data, batch_size=32, shuffle=True, collate_fn=collate,
                              generator=torch.Generator().manual_seed(42 * 1000 + 1))

    trainer = SameBatches(model=model, args=args, train_dataset=data, data_collator=collate)
    cpu0, t0 = usage(), time.perf_counter()
    trainer.train()
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": usage() - cpu0, "samples": steps * 32, "steps": steps,
            "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}


def side_prepare(cached: str) -> dict:
    """A second run's data preparation (load, hash, features) with the features cache warm, or with it off."""
    from peftbench.config import expand, load_grid
    from peftbench.run.recipe import prepare_data

    run = expand(load_grid(data=grid("/tmp/peftbench-bench", cache_features=cached == "1")))[0]
    cpu0, t0 = usage(), time.perf_counter()
    *_, report = prepare_data(run)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": usage() - cpu0, "samples": 1, "steps": 0,
            "peak_rss_mb": peak_rss_mb(), "cache": report["features_cache"]}


def side_metric(padding: str) -> dict:
    """One epoch of LoRA over the whole training set, then the test metrics (a real run through the grid)."""
    from peftbench.config import load_grid
    from peftbench.runner import run_grid
    from peftbench.store import Store

    out = f"/tmp/peftbench-bench-metric-{padding}"
    cpu0 = usage()
    run_grid(load_grid(data=grid(out, padding=padding)), in_process=True, show_progress=False, echo=lambda *a: None)
    [res] = Store(out).results()
    return {"seconds": res.timing.train_seconds, "cpu_seconds": usage() - cpu0,
            "samples": res.training.samples_seen, "steps": res.training.optimizer_steps,
            "peak_rss_mb": res.memory.peak_rss_mb, "accuracy": res.test.metrics["accuracy"],
            "macro_f1": res.test.metrics["macro_f1"], "test_loss": res.test.loss}


SIDES = {"peftbench": side_peftbench, "plain": side_plain, "trainer": side_trainer, "prepare": side_prepare,
         "metric": side_metric, "fixed": lambda steps: side_peftbench(steps, "max_length")}


# ------------------------------------------------------------------------------------------- orchestration

def spawn(name: str, arg) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--side", name, "--arg", str(arg), "--threads", str(THREADS)],
                          capture_output=True, text=True, env=dict(os.environ, PEFTBENCH_PROGRESS="0"))
    if proc.returncode:
        raise SystemExit(f"side {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def interleave(a: tuple, b: tuple, reps: int) -> list[tuple[dict, dict]]:
    pairs = []
    for _ in range(reps):
        pairs.append((spawn(*a), spawn(*b)))
        print(f"  {a[0]} {pairs[-1][0]['seconds']:.1f}s  {b[0]} {pairs[-1][1]['seconds']:.1f}s", file=sys.stderr)
    return pairs


def ratio_line(title: str, pairs, key, better: str) -> str:
    ratios = [key(x, y) for x, y in pairs]
    med = statistics.median(ratios)
    wall = [(x["seconds"], y["seconds"]) for x, y in pairs]
    cpu = [(x["cpu_seconds"], y["cpu_seconds"]) for x, y in pairs]
    return (f"| {title} | {med:.3f} | {min(ratios):.3f}–{max(ratios):.3f} | {better} | "
            + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in wall) + " | " + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in cpu) + " |")


def main() -> None:
    global THREADS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side")
    p.add_argument("--arg")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-metric", action="store_true", help="skip the two one-epoch runs of ratio 3's metric")
    args = p.parse_args()
    THREADS = args.threads
    os.environ.setdefault("PEFTBENCH_DATA", str(HERE.parents[1] / "shared" / "datasets"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.side:
        print(json.dumps(SIDES[args.side](args.arg if args.side in ("prepare", "metric") else int(args.arg))))
        return
    if not MODEL.is_dir():
        raise SystemExit(f"{MODEL} not found: build it with ../shared/tools/offline-models (see README)")
    thr = lambda x, y: (x["samples"] / x["seconds"]) / (y["samples"] / y["seconds"])  # noqa: E731
    rows = []
    spawn("prepare", "1")  # fills the features cache for the sides below
    engine = interleave(("peftbench", args.steps), ("plain", args.steps), args.reps)
    rows.append(ratio_line("1. throughput, peftbench / plain PyTorch + peft loop", engine, thr, "≥ 0.95"))
    rows.append(ratio_line("1. peak memory, peftbench / plain loop", engine,
                           lambda x, y: x["peak_rss_mb"] / y["peak_rss_mb"], "≤ 1.05"))
    trainer = interleave(("peftbench", args.steps), ("trainer", args.steps), args.reps)
    rows.append(ratio_line("2. throughput, peftbench / HF Trainer", trainer, thr, "≥ 1.0"))
    padding = interleave(("peftbench", args.steps), ("fixed", args.steps), args.reps)
    rows.append(ratio_line("3. throughput, dynamic / fixed padding (150)", padding, thr, "> 1"))
    prepare = interleave(("prepare", "1"), ("prepare", "0"), args.reps)
    rows.append(ratio_line("4. a second run's data preparation, uncached / cached", prepare,
                           lambda x, y: y["seconds"] / x["seconds"], "> 1"))
    print(f"# peftbench bench — me5-small + LoRA (r 8), ParsiNLU food, batch 32, max length 150, {args.steps} steps a "
          f"side, {args.reps} interleaved pairs, {THREADS} threads\n")
    print("| Ratio | Median | Range | Target | Wall s (A/B) per pair | CPU s (A/B) per pair |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    mem = [(x["peak_rss_mb"], y["peak_rss_mb"]) for x, y in engine]
    print(f"\nPeak RSS (MB) peftbench/plain per pair: {', '.join(f'{a:.0f}/{b:.0f}' for a, b in mem)}")
    if not args.skip_metric:
        dyn, fixed = spawn("metric", "dynamic"), spawn("metric", "max_length")
        print("\nOne epoch over the whole training set each way (3. metric unchanged?):\n")
        print("| Padding | Train s | CPU s | Steps | Test accuracy | Test macro-F1 | Test loss |\n|---|---|---|---|---|---|---|")
        for name, r in (("dynamic", dyn), ("max_length (150)", fixed)):
            print(f"| {name} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['steps']} | {r['accuracy']:.4f} | "
                  f"{r['macro_f1']:.4f} | {r['test_loss']:.4f} |")
    import platform

    import torch
    import transformers
    import peft

    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, peft {peft.__version__}; load average at the end "
          f"{os.getloadavg()[0]:.2f}.")


THREADS = 2
if __name__ == "__main__":
    main()
