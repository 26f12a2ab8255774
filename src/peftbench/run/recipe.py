"""One run, top to bottom: a pure function of its resolved ``RunSpec``, writing into its own folder.

``setup`` loads data and model, applies the method and builds the optimizer; ``train_epoch`` is one pass of
AdamW over a random ``epoch_fraction`` of train; ``evaluate`` scores a split; ``BestKeeper`` keeps the best
epoch's trainable weights (early stopping on the validation metric); ``build_result`` gathers every
measurement.  ``execute`` strings them together and writes ``result.json``, ``curves.json``,
``predictions.jsonl`` and the trained weights (see ``RunFolder``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import registry
from ..config import RunSpec, features_fields
from ..data.cache import FeaturesCache, cache_root, features_key
from ..data.loading import content_hash
from ..analysis import run_analyses, snapshot
from ..families import head_modules
from ..measure import MemoryMeter, Stopwatch, contention, count_parameters, default_threads, merge_ranks, provenance
from ..methods.adapter import ModelAdapter, base_model
from ..methods.base import Method, MethodContext
from ..tasks.base import Prepared, Task, class_weights, source_hash
from ..models import inspect_model, load_weights
from ..result import VERSION as RESULT_VERSION, RunResult
from ..search import should_prune
from . import checkpoint
from .batching import eval_loader, lengths, to_device, train_loader
from .distributed import Ranks
from .failure import Position, RunFailed
from .folder import RunFolder
from .inference import measure as inference_cost
from ..trackers import Trackers


def truncated(features, max_length: int) -> dict:
    """Per split, how many features reached ``max_length`` tokens (cut by truncation, or exactly that long);
    windowed QA and multiple-choice features (nested) are not counted here."""
    out = {}
    for split, ds in features.items():
        if "input_ids" not in ds.column_names:
            continue
        n = 0
        for batch in ds.iter(batch_size=10_000):
            ids = batch["input_ids"]
            if ids and ids[0] and isinstance(ids[0][0], list):
                return {}
            n += sum(len(x) >= max_length for x in ids)
        out[split] = n
    return out


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is '{name}' but no CUDA device is available; use train.device=cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if device.type == "cpu" and precision == "fp16":
        raise RuntimeError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@dataclass
class Tally:
    """What accumulates while a run goes: where it is, its clocks, optimizer steps, samples and tokens seen,
    samples scored, and what the task noted about its metrics."""

    position: Position = field(default_factory=Position)
    train_clock: Stopwatch = field(default_factory=Stopwatch)
    eval_clock: Stopwatch = field(default_factory=Stopwatch)
    steps: int = 0
    samples: int = 0
    tokens: int = 0
    eval_samples: int = 0
    metric_info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """Everything the loop needs, made once and not changed (what accumulates is in ``tally``)."""

    run: RunSpec
    device: torch.device
    task: Task
    prep: Prepared
    model: torch.nn.Module
    method: Method
    adapter: ModelAdapter
    trainer: ModelAdapter  # training calls: through the DDP wrapper where there is one
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    lr: float
    samples_per_epoch: int
    steps_per_epoch: int
    ctx: MethodContext
    model_info: dict
    data_report: dict
    parameters: dict
    meter: MemoryMeter
    ranks: Ranks  # the run's processes (one unless train.launcher started several)
    tally: Tally
    show: bool = True
    initial_snapshot: dict | None = None  # analysis.snapshot before training (where train.analysis asks for one)
    row_lengths: list | None = None  # train rows' lengths (train.group_by_length)
    options: dict = field(default_factory=dict)  # speed / memory options in effect (recorded in provenance)
    class_weights: dict | None = None  # label -> weight in the loss (train.class_weights)
    trackers: Trackers | None = None  # train.trackers (the main process only)

    def loader(self, split: str, indices=None, generator=None, rows=None) -> DataLoader:
        if split == "train":
            return train_loader(self.prep, self.run.train, self.run.max_length(), indices, generator, self.row_lengths,
                                self.ranks.rank, self.ranks.world)
        return eval_loader(self.prep, self.run.train, self.run.max_length(), split, rows)


def prepare_data(run: RunSpec):
    """The run's data as features: load, hash, tokenise (or load the tokenised features from the cache).
    Returns (task, Prepared, model config, model info, data report)."""
    task = registry.get("task", run.task.type)(run.task)
    raw = task.load()
    config, tokenizer, arch, model_info = inspect_model(run.model)
    hashes = {split: content_hash(ds) for split, ds in raw.splits.items()}
    cache = None
    if run.train.cache_features:
        key = features_key(features_fields(task.spec.model_dump(mode="json")), source_hash(task), tokenizer, arch, run.max_length(),
                           hashes)
        cache = FeaturesCache(cache_root() / key)
        cache.folder.mkdir(parents=True, exist_ok=True)
    prep = task.prepare(raw, tokenizer, arch, run.max_length(), cache=cache)
    data_report = {**raw.report, "content_sha256": hashes, "features_cache": cache.summary() if cache else None,
                   "truncated_at_max_length": truncated(prep.features, run.max_length())}
    return task, prep, config, model_info, data_report


def setup(run: RunSpec, show: bool = True, tally: Tally | None = None) -> Setup:
    from transformers import get_scheduler, set_seed

    torch.set_num_threads(run.train.threads or default_threads())  # recorded; never more than the cores
    ranks = Ranks(pick_device(run.train.device), run.train)
    device = ranks.device  # one run on several processes: each rank its own device (or the CPU)
    set_seed(run.seed)
    meter = MemoryMeter(device)  # the baseline: before data and model are loaded
    with ranks.first():  # rank 0 fills the features cache, the others read it
        task, prep, config, model_info, data_report = prepare_data(run)
    weights = class_weights(prep, run.train.class_weights, run.task.name)
    if weights:  # the tasks' loss reads them from the Prepared
        prep = dataclasses.replace(prep, extra={**prep.extra, "class_weights": torch.tensor(list(weights.values()))})
    tokenizer, arch = prep.tokenizer, prep.arch
    model = load_weights(run.model, config, tokenizer, arch, prep.head, model_info,
                         what=f"task '{run.task.name}' ({run.task.type})")

    tr = run.train
    per_epoch = max(1, int(round(len(prep.features["train"]) * tr.epoch_fraction)))
    steps_per_epoch = math.ceil(math.ceil(per_epoch / tr.batch_size) / tr.grad_accum)
    total_steps = steps_per_epoch * run.epoch_cap()  # the schedule spans every epoch the run may train
    heads = head_modules(model, prep.head.kind)
    wants = run.train.analysis.intruders or run.train.analysis.forgetting_text
    initial = snapshot(model, heads) if wants else None
    method = registry.get("method", run.method.name)()
    fresh = list(model_info.get("newly_initialised", {}))  # trained and saved by every method, as the head is
    ctx = MethodContext(family=arch.family, model_type=model_info["model_type"], head_modules=heads + fresh,
                        peft_task_type=arch.peft_task_type(prep.head.kind), total_steps=total_steps)
    if run.model.quantization:  # QLoRA: frozen k-bit base, norms in fp32, inputs that carry gradients
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=tr.gradient_checkpointing)
    model = method.apply(model, method.Options.model_validate(run.method.options), ctx)
    parameters = count_parameters(model)
    if not run.model.quantization:  # (a bitsandbytes model is placed as it loads and refuses .to)
        model.to(device)
    options = speed_options(model, tr, device)
    model = ranks.shard(model, base_model(model))  # FSDP: sharded before the optimizer sees its parameters
    lr = run.lr() or type(method).lr_for(arch.family)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], tr, lr, device)
    scheduler = get_scheduler(tr.scheduler, optimizer, num_warmup_steps=int(tr.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    wrapped, optimizer = ranks.prepare(model, optimizer)
    launched = ranks.describe()
    if launched:
        options["launcher"] = launched
    tally = tally or Tally()
    tally.metric_info.update(task.metric_info(prep))
    return Setup(run, device, task, prep, model, method, ModelAdapter(model, method),
                 ModelAdapter(model, method, call=wrapped), optimizer, scheduler, lr, per_epoch, steps_per_epoch, ctx,
                 model_info, data_report, parameters, meter, ranks, tally, show and ranks.main,
                 initial_snapshot=initial, options=options,
                 row_lengths=lengths(prep.features["train"]) if tr.group_by_length else None, class_weights=weights)


def speed_options(model, tr, device: torch.device) -> dict:
    """Apply the speed / memory options (TF32, gradient checkpointing, torch.compile) and say what is in effect."""
    done = {"padding": tr.padding, "group_by_length": tr.group_by_length, "precision": tr.precision,
            "optimizer": tr.optimizer}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tr.tf32
        done["tf32"] = tr.tf32
    if tr.gradient_checkpointing:
        base = base_model(model)
        if not getattr(base, "supports_gradient_checkpointing", False):
            raise RunFailed(f"train.gradient_checkpointing: {type(base).__name__} does not support it")
        if hasattr(base, "activation_checkpointing_enable"):  # transformers' newer name
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(base, "enable_input_require_grads"):  # frozen embeddings: checkpointed blocks still get grads
            base.enable_input_require_grads()
        done["gradient_checkpointing"] = True
    if tr.compile:
        model.forward = torch.compile(model.forward)
        done["compile"] = True
    return done


def make_optimizer(params, tr, lr: float, device: torch.device):
    if tr.optimizer == "adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise RunFailed("train.optimizer=adamw_8bit needs bitsandbytes (pip install bitsandbytes)") from None
        if device.type != "cuda":
            raise RunFailed("train.optimizer=adamw_8bit needs a CUDA device; use adamw on CPU")
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=tr.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=tr.weight_decay, fused=device.type == "cuda" or None)


def train_epoch(s: Setup, epoch: int, rng: np.random.Generator, bar) -> dict:
    """One epoch: a fresh random ``epoch_fraction`` of train, shuffled with a per-epoch seed."""
    tr, task, model = s.run.train, s.task, s.model
    model.train()
    idx = rng.permutation(len(s.prep.features["train"]))[:s.samples_per_epoch].tolist()
    loader = s.loader("train", idx, torch.Generator().manual_seed(s.run.seed * 1000 + epoch))
    trainable = [p for p in model.parameters() if p.requires_grad]
    # sums stay on the device: the host reads them at logging points only (on a GPU, every read waits for it)
    sums = torch.zeros(4, device=s.device, dtype=torch.float64)  # loss x rows, objective x rows, tokens, rows
    every_step = s.device.type != "cuda"  # CPU: reading a value costs nothing, so a NaN stops the run at once
    tally = s.tally
    tally.position.phase, tally.position.epoch = "training", epoch
    with tally.train_clock.section():
        for i, batch in enumerate(loader):
            batch = to_device(batch, s.device)
            step_ends = (i + 1) % tr.grad_accum == 0 or i + 1 == len(loader)
            with s.ranks.no_sync(s.trainer.call, sync=step_ends):
                loss, objective = forward_backward(s, batch, every_step)
            bs = task.batch_size(batch)
            tokens = batch["attention_mask"].sum() if "attention_mask" in batch else 0
            sums += torch.stack([loss.detach().double() * bs, objective.detach().double() * bs,
                                 torch.as_tensor(tokens, device=s.device, dtype=torch.float64),
                                 torch.tensor(float(bs), device=s.device, dtype=torch.float64)])
            if step_ends:
                tally.steps += 1
                optimizer_step(s, trainable, tally.steps)
                tally.position.step = tally.steps
                bar.update(1)
                if tally.steps % tr.log_every == 0:  # the one host read between logging points
                    check_finite(objective)
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
                    if s.trackers:
                        s.trackers.log({"train/loss": loss.item(), "train/objective": objective.item(),
                                        "train/lr": s.scheduler.get_last_lr()[0]}, tally.steps)
        if s.device.type == "cuda":
            torch.cuda.synchronize(s.device)
    sums = s.ranks.sum(sums)  # over the run's processes (each trained on its share of every batch)
    loss_sum, objective_sum, tokens, seen = sums.tolist()
    check_finite(torch.tensor(objective_sum / max(seen, 1)))
    tally.tokens += int(tokens)
    tally.samples += int(seen)
    return {"train_loss": loss_sum / max(seen, 1), "train_objective": objective_sum / max(seen, 1)}


def forward_backward(s: Setup, batch: dict, check: bool = True):
    """The task loss and the training objective of one batch (on the device), back-propagated (scaled for
    gradient accumulation). ``check``: stop on a non-finite objective before its backward pass."""
    with autocast(s.device, s.run.train.precision):
        outputs = s.task.forward(s.trainer, batch, s.prep)
        loss = s.task.loss(outputs, batch, s.prep)
        objective = s.trainer.objective(loss)
    if check:
        check_finite(objective)
    s.ranks.backward(objective / s.run.train.grad_accum)
    return loss, objective


def optimizer_step(s: Setup, trainable: list, step: int) -> None:
    """Clip, step the optimizer, let the method act (AdaLoRA's budget), step the schedule, clear the gradients."""
    if s.run.train.max_grad_norm:
        s.ranks.clip(trainable, s.run.train.max_grad_norm)
    s.optimizer.step()
    s.method.after_step(s.model, step)
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)


def check_finite(objective: torch.Tensor) -> None:
    if not torch.isfinite(objective):
        raise FloatingPointError(f"non-finite training loss ({objective.item()}); lower the learning rate or use fp32")


def evaluate(s: Setup, split: str, calibration: dict | None = None) -> dict:
    """Loss, metrics (overall and per evaluation group, e.g. language) and per-example predictions. With several
    processes each scores its share of the split and every one gets all predictions (the same metrics)."""
    task, prep = s.task, s.prep
    s.model.eval()
    preds, refs, loss_sum, n = [], [], 0.0, 0
    s.tally.position.phase = f"evaluating {split}"
    start = time.perf_counter()
    rows = s.ranks.share(len(prep.features[split])) if s.ranks.shares_splits else None
    with torch.inference_mode(), s.tally.eval_clock.section():
        for batch in tqdm(s.loader(split, rows=rows), desc=split, leave=False, disable=not s.show):
            batch = to_device(batch, s.device)
            with autocast(s.device, s.run.train.precision):
                outputs = task.forward(s.adapter, batch, prep)
                preds += task.decode(outputs, batch, prep, s.adapter)
            bs = task.batch_size(batch)
            loss_sum += float(task.loss(outputs, batch, prep)) * bs
            n += bs
            refs += task.references(batch)
        if rows is not None:  # the ranks' shares, in rank order, are the split in order
            parts = s.ranks.gather((preds, refs, loss_sum, n))
            preds, refs = [p for part in parts for p in part[0]], [r for part in parts for r in part[1]]
            loss_sum, n = sum(part[2] for part in parts), sum(part[3] for part in parts)
    s.ranks.reshard(s.model)
    preds, refs, info = task.finalize(prep, split, preds, refs, calibration)
    s.tally.metric_info.update(info)
    seconds = time.perf_counter() - start
    s.tally.eval_samples += len(preds)
    result = {"loss": loss_sum / max(n, 1), "metrics": task.compute_metrics(prep, preds, refs, calibration),
              "predictions": preds, "references": refs, "seconds": seconds, "samples": len(preds)}
    groups = sorted({p["group"] for p in preds if p.get("group") is not None})
    if groups:
        result["metrics_by_group"] = {
            g: {**task.compute_metrics(prep, [p for p in preds if p.get("group") == g],
                                       [r for p, r in zip(preds, refs) if p.get("group") == g], calibration),
                "samples": sum(p.get("group") == g for p in preds)} for g in groups}
    return result


class BestKeeper:
    """The best epoch's trainable weights (on CPU) and validation result, by a validation score (higher is
    better unless the task declares the metric otherwise); NaN never wins."""

    def __init__(self, higher_is_better: bool = True):
        self.higher = higher_is_better
        self.score, self.epoch, self.weights, self.validation = (-math.inf if self.higher else math.inf), None, None, None

    def offer(self, epoch: int, score: float, model, validation: dict | None = None) -> bool:
        if not (score > self.score if self.higher else score < self.score):  # also False for NaN
            return False
        self.score, self.epoch, self.validation = score, epoch, validation
        self.weights = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
        return True

    def restore(self, model, metric: str) -> None:
        if self.weights is None:
            raise RunFailed(f"validation {metric} was not a number in any epoch (NaN); nothing to restore — check "
                            "the validation data and the learning rate")
        named = dict(model.named_parameters())
        with torch.no_grad():
            for n, w in self.weights.items():
                named[n].copy_(w.to(named[n].device))


def export_merged(s: Setup, folder: Path) -> dict:
    """Fold the adapter into the base weights, check the logits on a test batch, save the merged model."""
    s.model.eval()
    batch = to_device(next(iter(s.loader("test"))), s.device)
    with torch.no_grad():
        before = s.task.forward(s.adapter, batch, s.prep).logits.float()
        merged = s.method.merge(s.model)
        after = s.task.forward(ModelAdapter(merged, s.method), batch, s.prep).logits.float()
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(merged, "save_pretrained"):
        merged.save_pretrained(folder)
    else:  # a peftbench head wrapper: plain weights
        from safetensors.torch import save_model

        save_model(merged, str(folder / "model.safetensors"))
    s.prep.tokenizer.save_pretrained(folder)
    return {"max_abs_logit_diff": float((before - after).abs().max()), "batch_size": len(before), "folder": "merged"}


def execute(run: RunSpec, run_dir: Path, show_progress: bool = True) -> RunResult | None:
    """The run into ``run_dir``; its result (None on the ranks other than 0 of a run on several processes)."""
    tally = Tally(Position(phase="loading data and model"))
    try:
        return _execute(run, run_dir, show_progress, tally)
    except BaseException as exc:  # the failure carries where the run was (the worker reports it)
        exc.peftbench_position = tally.position
        raise


def _execute(run: RunSpec, run_dir: Path, show_progress: bool, tally: Tally) -> RunResult | None:
    folder = RunFolder(run_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    s = setup(run, show_progress, tally)
    if run.train.trackers and s.ranks.main:
        s = dataclasses.replace(s, trackers=Trackers(run.train.trackers, run.slug, run.model_dump(mode="json"),
                                                     folder.trackers))
    try:
        result = _train_and_test(s, run, folder, t_start)
    except BaseException:
        if s.trackers:
            s.trackers.abort()
        raise
    if s.trackers and result is not None:
        result.provenance["trackers"] = s.trackers.where
        s.trackers.finish({"test": {"loss": result.test.loss, **result.test.metrics}, "parameters": result.parameters.model_dump(),
                           "memory": result.memory.model_dump(), "timing": result.timing.model_dump(),
                           "inference": result.inference.model_dump() if result.inference else {}})
    return result


def _train_and_test(s: Setup, run: RunSpec, folder: RunFolder, t_start: float) -> RunResult | None:
    tally = s.tally
    metric, epochs, tr = s.task.metric, run.epoch_cap(), run.train
    planned = run.epochs()  # past it (train.extend_to), an epoch must set a new best for the next to run
    rng = np.random.default_rng(run.seed)
    higher = s.task.metric_spec(metric).higher_is_better
    curves, best, bad_epochs, stopped_early, pruned_at = [], BestKeeper(higher), 0, False, None
    first, resumed_after, saved_memory = 1, [], None
    state = checkpoint.load(s, folder.checkpoint) if tr.checkpoint_every else None
    if state is not None:  # a run killed after a saved epoch goes on from there
        loop = checkpoint.restore(s, state, rng)
        curves, bad_epochs, stopped_early = loop["curves"], loop["bad_epochs"], loop["stopped_early"]
        pruned_at = loop.get("pruned_at")
        best.score, best.epoch, best.weights, best.validation = loop["best"]
        first = epochs + 1 if stopped_early or pruned_at or loop.get("ended") else state["epoch"] + 1
        resumed_after, saved_memory = [*loop["resumed_after"], state["epoch"]], state["memory"]
    bar = tqdm(total=s.steps_per_epoch * epochs, desc=f"{run.method.label} {run.model.name}/{run.task.name} s{run.seed}",
               disable=not s.show, leave=False, initial=tally.steps)
    try:
        if tr.eval_before_training and first == 1:  # where the curves start: the untrained model (or adapter at its init)
            curves.append(_curve_point(s, 0, 0, {"train_loss": None, "train_objective": None},
                                       evaluate(s, "validation")))
        for epoch in range(first, epochs + 1):
            losses = train_epoch(s, epoch, rng, bar)
            val = evaluate(s, "validation")
            curves.append(_curve_point(s, epoch, tally.steps, losses, val))
            if s.trackers:
                s.trackers.log({"epoch": epoch, "train/epoch_loss": losses["train_loss"], "validation/loss": val["loss"],
                                **{f"validation/{k}": v for k, v in val["metrics"].items()},
                                **{f"method/{k}": v for k, v in s.method.state(s.model).items()}}, tally.steps)
            improved = best.offer(epoch, val["metrics"][metric], s.model, val)
            if improved:
                bad_epochs = 0
            else:
                bad_epochs += 1
                if run.patience() and bad_epochs >= run.patience() and tr.min_epochs <= epoch < epochs and \
                        s.method.may_stop(s.model, tally.steps):
                    stopped_early = True
            if run.method.prune and should_prune(run.method.prune, {c["epoch"]: c["val_metrics"][metric] for c in curves
                                                                    if c["epoch"] > 0}, higher):
                pruned_at = epoch  # an optuna trial below the median of the finished ones at this epoch
            ended = planned <= epoch < epochs and not improved  # extended (train.extend_to) only while improving
            if tr.checkpoint_every == "epoch":
                tally.position.phase = "saving a checkpoint"
                checkpoint.save(s, folder.checkpoint, epoch, rng, {
                    "curves": curves, "bad_epochs": bad_epochs, "stopped_early": stopped_early, "pruned_at": pruned_at,
                    "ended": ended,
                    "best": (best.score, best.epoch, best.weights, best.validation), "resumed_after": resumed_after})
            if stopped_early or pruned_at or ended:
                break
    finally:  # a failing run leaves no half-drawn bar above its one-line reason
        bar.close()
    best.restore(s.model, metric)
    validation = best.validation
    if s.task.calibrated:  # fit on the best checkpoint's validation predictions, then score validation with it
        calibration = s.task.calibrate(s.prep, best.validation)
        validation = evaluate(s, "validation", calibration)
    else:
        calibration = None
    test = evaluate(s, "test", calibration)
    memory = s.meter.read() if saved_memory is None else checkpoint.merge_memory(saved_memory, s.meter.read())
    if s.ranks.world > 1:  # one run on several processes: rank 0 gathers the others' readings and writes the run
        memory = merge_ranks(s.ranks.gather(memory))
        cpu = s.ranks.gather((tally.train_clock.cpu, tally.eval_clock.cpu))
        tally.train_clock.cpu, tally.eval_clock.cpu = sum(c[0] for c in cpu), sum(c[1] for c in cpu)
    tally.position.phase = "saving"
    state = s.ranks.full_state(s.model)  # FSDP: every rank takes part in gathering the full weights
    if not s.ranks.main:
        return None
    s.method.save(s.model, folder.weights, state)
    analysis = run_analyses(s)  # after the memory reading: its own models do not count
    inference = None
    if tr.inference_cost:  # before export_merged, which unloads the adapter
        inference = inference_cost(s, folder.weights) if s.ranks.world == 1 else \
            {"skipped": "not measured for a run on several processes (train.launcher)"}
    merge_check = export_merged(s, folder.merged) if tr.export_merged else None
    folder.write_predictions(test["predictions"], test["references"])
    folder.write_predictions(validation["predictions"], validation["references"], "validation")
    return build_result(s, curves, best, test, calibration, memory, merge_check, stopped_early, t_start, analysis,
                        resumed_after, inference, pruned_at)


def _curve_point(s: Setup, epoch: int, step: int, losses: dict, val: dict) -> dict:
    return {"epoch": epoch, "step": step, **losses, "val_loss": val["loss"], "val_metrics": val["metrics"],
            **s.method.state(s.model)}


def build_result(s: Setup, curves, best: BestKeeper, test, calibration, memory, merge_check, stopped_early,
                 t_start, analysis=None, resumed_after=(), inference=None, pruned_at=None) -> RunResult:
    run, tally, train, ev = s.run, s.tally, s.tally.train_clock, s.tally.eval_clock
    per_second = (lambda n, secs: n / secs if secs else None)
    return RunResult.load({
        "version": RESULT_VERSION, "run_id": run.run_id, "slug": run.slug, "model": run.model.name, "method": run.method.label,
        "method_name": run.method.name, "sweep": run.method.sweep.model_dump() if run.method.sweep else None,
        **({"sweep_point": run.method.point} if run.method.point else {}),
        **({"sweep_trial": run.method.trial} if run.method.trial is not None else {}),
        "task": run.task.name, "task_type": run.task.type, "seed": run.seed,
        "parameters": s.parameters, "memory": memory,
        "timing": {"train_seconds": round(train.wall, 3), "eval_seconds": round(ev.wall, 3),
                   "eval_cpu_seconds": round(ev.cpu, 3), "wall_seconds": round(time.time() - t_start, 3),
                   "train_samples_per_second": per_second(tally.samples, train.wall),
                   "train_tokens_per_second": per_second(tally.tokens, train.wall),
                   "eval_samples_per_second": per_second(tally.eval_samples, ev.wall),
                   "processes": s.ranks.world,  # the CPU time below is theirs together, the threads all of theirs
                   **contention(train, torch.get_num_threads() * s.ranks.world, s.device)},
        "training": {"lr": s.lr, "lr_source": run.lr_source(), "epochs_planned": run.epochs(),
                     **({"epoch_cap": run.epoch_cap()} if run.epoch_cap() > run.epochs() else {}),
                     "epochs_run": sum(c["epoch"] > 0 for c in curves), "best_epoch": best.epoch,
                     "stopped_early": stopped_early, "optimizer_steps": tally.steps,
                     "steps_planned": s.steps_per_epoch * run.epochs(), "samples_per_epoch": s.samples_per_epoch,
                     "samples_seen": tally.samples, "tokens_seen": tally.tokens,
                     "validation_metric": s.task.metric, "best_validation": best.score,
                     "class_weights": s.class_weights,
                     **({"resumed_after": list(resumed_after)} if resumed_after else {}),
                     **({"pruned_at": pruned_at} if pruned_at else {})},
        "test": {"loss": test["loss"], "metrics": test["metrics"], "samples": test["samples"],
                 **({"metrics_by_group": test["metrics_by_group"]} if "metrics_by_group" in test else {})},
        "calibration": calibration, "metric_info": tally.metric_info, "curves": curves, "method_notes": s.ctx.notes,
        "merge_check": merge_check, "model_info": s.model_info, "data": s.data_report, "labels": list(s.prep.labels),
        "pes_weights": run.task.pes_weights or s.task.pes_weights,
        "provenance": {**provenance(s.device), "seed": run.seed, "config_hash": run.run_id,
                       "data_sha256": s.data_report["content_sha256"], "options": s.options, "pid": os.getpid(),
                       "started": t_start, "finished": time.time()},
        **({"analysis": analysis} if analysis else {}),
        **({"inference": inference} if inference else {}),
    })
