"""``peftbench plan grid.yaml --target A100-80GB``: a run's peak GPU memory on a machine you do not have.

No GPU is needed. For each (model, method, task):

* **weights, gradients, optimizer state** are counted exactly from the model's shapes: the model is built on
  PyTorch's ``meta`` device (no memory) with the method applied, and every parameter is priced by its dtype --
  frozen linear weights of a quantised base at 4 or 8 bits plus the quantisation constants, the trainable
  parameters' gradients at their dtype, AdamW's two moments at the parameter dtype (``adamw_8bit``: one byte
  each);
* **activations** are measured, not guessed: copies of the model with one and with two layers (the real
  widths, the method applied) run a forward and backward pass on CPU at two sequence lengths, in the run's
  precision (autocast) and with or without gradient checkpointing, while a saved-tensor hook adds up what
  autograd keeps for the backward pass (each storage once, parameters left out), plus the loss's input. The
  difference between the two depths is one layer; the rest is the embeddings and the head. Measured at the
  run's ``max_length`` and half of it, fitted as ``a*s + b*s^2`` per row (``s``: tokens) and scaled to the
  run's batch and depth, with one more layer's worth for the backward pass's transient gradients.

The peak is weights + optimizer state + the larger of gradients and activations: the backward pass frees each
block's saved activations as it writes that block's gradients, so the two do not peak together (on me5-small
this is within 5% of what one real training step allocates; ``bench/footprint_check.py``, docs/performance.md).
It is compared with 90% of the target's memory. Runs that do not fit get the cheapest change that makes
them fit, tried in this order (each is kept once tried): ``train.precision=bf16``, ``train.optimizer=
adamw_8bit``, ``train.gradient_checkpointing=true``, halving ``train.batch_size`` (doubling ``grad_accum``,
the same optimisation) down to 1, and for adapter methods a 4-bit base (QLoRA). What it leaves out: the CUDA
context (outside PyTorch's allocator counters, as the runs' own memory figures are), allocator fragmentation
(reserved above allocated, typically 5-15%), and kernels' workspaces.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass

GIB = 2**30
# nominal memory of common GPUs, GiB
GPUS = {"T4": 16, "V100-16GB": 16, "V100-32GB": 32, "A10": 24, "A10G": 24, "L4": 24, "RTX-3090": 24, "RTX-4090": 24,
        "A40": 48, "A6000": 48, "L40S": 48, "A100-40GB": 40, "A100-80GB": 80, "H100": 80, "H100-80GB": 80,
        "H200": 141, "B200": 180}
BUDGET = 0.9  # of the target's memory, as for the machine the grid runs on (plan.memory_budget_mb)
QUANT_BYTES = {4: 0.5 + 0.127 / 8, 8: 1.0 + 4 / 4096}  # per weight: NF4 + double-quantised constants; int8 + scales


@dataclass(frozen=True)
class Target:
    name: str
    gib: float

    @property
    def budget_mb(self) -> float:
        return BUDGET * self.gib * 1024


def parse_target(text: str) -> Target:
    """A GPU name (``A100-80GB``, ``H100``, ``L4`` ...; case-insensitive) or a size (``24GB``, ``16GiB``)."""
    key = text.strip().upper().replace("_", "-").replace(" ", "-")
    named = {k.upper(): (k, v) for k, v in GPUS.items()}
    if key in named:
        return Target(*named[key])
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(GB|GIB|G)", text.strip().upper().replace(" ", ""))
    if m:
        return Target(f"{m.group(1)} GiB", float(m.group(1)))
    raise ValueError(f"--target '{text}' is neither a known GPU ({', '.join(GPUS)}) nor a size such as 24GB")


# ---------------------------------------------------------------- shapes: weights, gradients, optimizer state

def _layers_attrs(config) -> list[str]:
    return [a for a in ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers")
            if isinstance(getattr(config, a, None), int)]


def depth(config) -> int:
    """The model's number of transformer blocks (encoder and decoder together for an encoder-decoder)."""
    sub = [getattr(config, k) for k in ("encoder", "decoder") if hasattr(config, k)]
    if sub:  # a generic EncoderDecoderModel
        return sum(depth(c) for c in sub)
    attrs = _layers_attrs(config)
    if "num_layers" in attrs and "num_decoder_layers" in attrs:  # T5
        return config.num_layers + config.num_decoder_layers
    return getattr(config, attrs[0]) if attrs else 1


def with_depth(config, k: int):
    """A copy of ``config`` with ``k`` blocks (in each stack of an encoder-decoder)."""
    config = copy.deepcopy(config)
    for part in [config] + [getattr(config, n) for n in ("encoder", "decoder") if hasattr(config, n)]:
        for attr in _layers_attrs(part):
            setattr(part, attr, k)
        if isinstance(getattr(part, "layer_types", None), list):  # e.g. Gemma 3's sliding / full attention pattern
            part.layer_types = part.layer_types[:k]
    return config


def build(run, config=None, device: str = "meta"):
    """The run's model with its head and method applied, on ``device`` (``meta``: shapes only, no memory);
    returns (model, architecture, the checkpoint's config, head kind)."""
    import torch

    from . import registry
    from .families import Head, head_modules
    from .methods.base import MethodContext
    from .models import inspect_model

    base_config, tok, arch, info = inspect_model(run.model)
    kind = registry.get("task", run.task.type).head_kind
    if kind is None:
        raise ValueError(f"task type '{run.task.type}' declares no head_kind: plan --target cannot build its model")
    head = Head(kind, labels=("a", "b"))  # (the head's width is negligible next to the body)
    config = copy.deepcopy(config if config is not None else base_config)
    for k, v in head.config_updates().items():
        setattr(config, k, v)
    config.pad_token_id = tok.pad_token_id  # (as the run's model gets it: decoders pool at the last non-pad token)
    dtype = getattr(torch, run.model.dtype)
    with torch.device(device):
        model = arch.head_class(kind, f"task '{run.task.name}'").from_config(config, dtype=dtype)
        method = registry.get("method", run.method.name)()
        ctx = MethodContext(family=arch.family, model_type=info["model_type"], head_modules=head_modules(model, kind),
                            peft_task_type=arch.peft_task_type(kind), total_steps=100)
        model = method.apply(model, method.Options.model_validate(run.method.options), ctx)
    return model, arch, base_config, kind


def state_bytes(run, model, quantization=None, optimizer: str | None = None) -> dict:
    """Weights, gradients and optimizer state of ``model`` (built by ``build``) in bytes; ``quantization``: a
    ``QuantizationSpec`` for the frozen linear weights (default the run's)."""
    import torch

    from .models import HEAD_MODULES

    quantization = run.model.quantization if quantization is None else quantization
    optimizer = optimizer or run.train.optimizer
    heads = {n for names in HEAD_MODULES.values() for n in names} | {"lm_head"}
    linear_weights = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                      and not (set(name.split(".")) & heads)}
    weights = grads = optim = 0.0
    trainable = total = 0
    for name, p in model.named_parameters():
        n, size = p.numel(), p.element_size()
        total += n
        if quantization and not p.requires_grad and name in linear_weights:
            weights += n * QUANT_BYTES[quantization.bits]
        elif quantization and not p.requires_grad:
            weights += n * 4  # prepare_model_for_kbit_training casts the other frozen parameters to fp32
        else:
            weights += n * size
        if p.requires_grad:
            trainable += n
            grads += n * size
            optim += n * (2 if optimizer == "adamw_8bit" else 2 * size)
    return {"weights": weights, "gradients": grads, "optimizer": optim, "trainable": trainable, "total": total}


# ---------------------------------------------------------------- activations, measured on reduced-depth copies

def saved_bytes(model, inputs: dict, precision: str) -> float:
    """Bytes autograd keeps for one forward / backward pass of ``model`` on ``inputs`` (CPU), each storage once,
    parameters and buffers left out, plus the loss's input (the logits)."""
    import torch

    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | \
        {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen: dict[int, int] = {}

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in skip:
                seen[ptr] = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # a tensor without storage (e.g. a wrapper subclass)
            pass
        return t

    model.train()
    dtype = torch.bfloat16 if precision in ("bf16", "fp16") else None  # (fp16 autocast is CUDA's; same widths)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**inputs)
        logits = out.logits if getattr(out, "logits", None) is not None else out.start_logits
    seen[logits.untyped_storage().data_ptr()] = logits.untyped_storage().nbytes()
    out.loss.float().backward()
    model.zero_grad(set_to_none=True)
    return float(sum(seen.values()))


def _checkpointing(model, on: bool) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        return
    if on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(base, "enable_input_require_grads"):
            base.enable_input_require_grads()
    else:
        base.gradient_checkpointing_disable()


def _inputs(kind, config, rows: int, tokens: int) -> dict:
    import torch

    from .families import HeadKind

    vocab = getattr(config, "vocab_size", None) or config.decoder.vocab_size
    ids = torch.randint(0, vocab, (rows, tokens))
    eos = getattr(config, "eos_token_id", None)
    if isinstance(eos, int):  # (T5's classification head pools at its end-of-sequence token)
        ids[:, -1] = eos
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == HeadKind.GENERATION:
        inputs["labels"] = ids.clone()
    elif kind == HeadKind.TOKEN:
        inputs["labels"] = torch.zeros_like(ids)
    elif kind == HeadKind.SPAN:
        inputs["start_positions"] = inputs["end_positions"] = torch.zeros(rows, dtype=torch.long)
    else:
        inputs["labels"] = torch.zeros(rows, dtype=torch.long)
    return inputs


def activation_profile(run, lengths: tuple[int, int] | None = None) -> dict:
    """The bytes autograd keeps as ``c + rows * (a*s + b*s^2)`` for one block (``per_layer``) and for the rest
    (``rest``: embeddings, head, loss), at each (precision, gradient checkpointing) a plan may try. ``c`` is what
    does not grow with the batch (autocast's low-precision copies of the weights); measured at the run's
    ``max_length`` and half of it, one and two rows (no extrapolation in length)."""
    import numpy as np
    import torch

    lengths = lengths or (max(8, run.max_length() // 2), run.max_length())
    points = [(1, lengths[0]), (1, lengths[1]), (2, lengths[1])]  # (rows, tokens)
    _, _, config, kind = build(run)
    measured: dict = {}
    for k in (1, 2):
        torch.manual_seed(0)
        model, *_ = build(run, with_depth(config, k), device="cpu")
        for checkpointing in (False, True):
            _checkpointing(model, checkpointing)
            for precision in ("fp32", "bf16"):
                for rows, s in points:
                    measured[precision, checkpointing, k, rows, s] = saved_bytes(
                        model, _inputs(kind, config, rows, s), precision)
        del model
    design = np.array([[1.0, r * s, r * s * s] for r, s in points])
    out = {}
    for precision in ("fp32", "bf16"):
        for checkpointing in (False, True):
            m = {(k, r, s): measured[precision, checkpointing, k, r, s] for k in (1, 2) for r, s in points}
            layer = [m[2, r, s] - m[1, r, s] for r, s in points]
            rest = [m[1, r, s] - (m[2, r, s] - m[1, r, s]) for r, s in points]
            out[f"{precision}/{'ckpt' if checkpointing else 'full'}"] = {
                "per_layer": [float(x) for x in np.linalg.solve(design, layer)],
                "rest": [float(x) for x in np.linalg.solve(design, rest)]}
    return out


def activations(profile: dict, precision: str, checkpointing: bool, layers: int, rows: int, tokens: int) -> dict:
    """Activation bytes of a ``rows`` x ``tokens`` batch through ``layers`` blocks, from ``activation_profile``:
    what autograd keeps (``saved``) and, during the backward pass, one block's worth more (``transient``: its
    activation gradients; with checkpointing, the block recomputed)."""
    key = "bf16" if precision in ("bf16", "fp16") else "fp32"
    fit = profile[f"{key}/{'ckpt' if checkpointing else 'full'}"]
    full = profile[f"{key}/full"]
    at = (lambda c: c[0] + rows * (c[1] * tokens + c[2] * tokens * tokens))
    return {"saved": layers * at(fit["per_layer"]) + at(fit["rest"]), "transient": at(full["per_layer"])}


# ---------------------------------------------------------------- prediction and the cheapest change

CHANGES = (("train.precision=bf16", {"precision": "bf16"}),
           ("train.optimizer=adamw_8bit", {"optimizer": "adamw_8bit"}),
           ("train.gradient_checkpointing=true", {"gradient_checkpointing": True}))


def predict(run, state: dict, profile: dict, layers: int, settings: dict | None = None) -> dict:
    """Predicted peak GPU memory (MB, by component) of ``run`` with training ``settings`` over its own."""
    tr = {"precision": run.train.precision, "optimizer": run.train.optimizer,
          "gradient_checkpointing": run.train.gradient_checkpointing, "batch_size": run.train.batch_size,
          **(settings or {})}
    optimizer = state["optimizer_8bit"] if tr["optimizer"] == "adamw_8bit" else state["optimizer"]
    weights = state["weights_4bit"] if tr.get("quantized") else state["weights"]
    act = activations(profile, tr["precision"], tr["gradient_checkpointing"], layers, tr["batch_size"],
                      run.max_length())
    parts = {"weights": weights, "gradients": state["gradients"], "optimizer": optimizer,
             "activations": act["saved"] + act["transient"]}
    mb = {k: v / 2**20 for k, v in parts.items()}
    # the backward pass frees a block's activations as it writes that block's gradients: the two peak apart
    mb["total"] = mb["weights"] + mb["optimizer"] + max(mb["gradients"], mb["activations"])
    return mb


def cheapest_fit(run, state: dict, profile: dict, layers: int, target: Target) -> tuple[str | None, dict]:
    """The first change (cumulative, in ``CHANGES`` order, then halving the batch, then a 4-bit base for adapter
    methods) under which the run fits ``target``; (None, prediction) where nothing listed makes it fit."""
    settings: dict = {}
    said: list[str] = []
    steps = list(CHANGES)
    batch = run.train.batch_size
    while batch > 1:
        batch //= 2
        steps.append((f"train.batch_size={batch} train.grad_accum={run.train.grad_accum * run.train.batch_size // batch}",
                      {"batch_size": batch}))
    if run.method.name != "full" and not run.model.quantization:
        steps.append(("models[].quantization={bits: 4} (QLoRA)", {"quantized": True}))
    for text, change in steps:
        current = {"precision": run.train.precision, "optimizer": run.train.optimizer,
                   "gradient_checkpointing": run.train.gradient_checkpointing}
        if all(current.get(k) == v for k, v in change.items()):
            continue  # already so
        settings = {**settings, **change}
        said = [s for s in said if not (s.startswith("train.batch_size") and text.startswith("train.batch_size"))]
        said.append(text)
        pred = predict(run, state, profile, layers, settings)
        if pred["total"] <= target.budget_mb:
            return " ".join(said), pred
    return None, predict(run, state, profile, layers, settings)


def footprint(run, target: Target) -> dict:
    """One (model, method, task): the prediction on ``target`` and, where it does not fit, the cheapest change."""
    from .config import QuantizationSpec

    model, _, config, _ = build(run)
    state = state_bytes(run, model)
    state["optimizer_8bit"] = state_bytes(run, model, optimizer="adamw_8bit")["optimizer"]
    state["weights_4bit"] = state_bytes(run, model, quantization=QuantizationSpec(bits=4))["weights"]
    layers = depth(config)
    profile = activation_profile(run)
    pred = predict(run, state, profile, layers)
    row = {"model": run.model.name, "method": run.method.label, "task": run.task.name, "target": target.name,
           "budget_mb": target.budget_mb, "trainable": state["trainable"], "total": state["total"], "layers": layers,
           "batch_size": run.train.batch_size, "max_length": run.max_length(), "predicted_mb": pred,
           "fits": pred["total"] <= target.budget_mb}
    if not row["fits"]:
        change, after = cheapest_fit(run, state, profile, layers, target)
        row["change"] = change or "none of the listed changes is enough: a larger GPU, FSDP over several, or a " \
                                  "shorter max_length"
        row["predicted_after_mb"] = after["total"]
    return row


if __name__ == "__main__":  # one (model, method, task), in its own process: python -m peftbench.footprint RUN_JSON TARGET
    import json
    import sys

    from .config import RunSpec
    from .run.worker import quiet_libraries

    quiet_libraries()
    print(json.dumps(footprint(RunSpec.model_validate_json(sys.argv[1]), parse_target(sys.argv[2]))))
