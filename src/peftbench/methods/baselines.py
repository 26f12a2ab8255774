"""Cheap baselines: BitFit (train only the biases, plus the task head) and head only (linear probing)."""
from __future__ import annotations

from .base import Method


def _freeze_all_but(model, keep) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(keep(name))


def _in_head(name: str, heads) -> bool:
    return name.split(".")[0] in heads


class HeadOnly(Method):
    name = "head_only"
    default_lr = {"encoder": 1e-3, "encoder-decoder": 1e-3, "decoder": 1e-3}

    def apply(self, model, spec, ctx):
        if not ctx.head_modules:
            raise ValueError("head_only: this task's model has no separate head to train")
        _freeze_all_but(model, lambda n: _in_head(n, ctx.head_modules))
        ctx.notes["trained"] = sorted(ctx.head_modules)
        return model


class BitFit(Method):
    name = "bitfit"
    default_lr = {"encoder": 1e-3, "encoder-decoder": 1e-3, "decoder": 5e-4}

    def apply(self, model, spec, ctx):
        biases = [n for n, _ in model.named_parameters() if n.endswith(".bias") and not _in_head(n, ctx.head_modules)]
        if not biases:
            raise ValueError(f"bitfit: {ctx.model_type} has no bias terms outside the head (e.g. Llama); "
                             "use head_only or a LoRA-family method")
        keep = set(biases)
        _freeze_all_but(model, lambda n: n in keep or _in_head(n, ctx.head_modules))
        ctx.notes["bias_tensors"] = len(biases)
        return model
