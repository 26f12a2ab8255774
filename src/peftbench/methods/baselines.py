"""Cheap baselines: BitFit (train only the biases, plus the task head) and head only (linear probing)."""
from __future__ import annotations

from .base import Method, freeze_all_but, in_head, lrs


class HeadOnly(Method):
    name = "head_only"
    default_lr = lrs(1e-3)

    def apply(self, model, options, ctx):
        if not ctx.head_modules:
            raise ValueError("head_only: this task's model has no separate head to train")
        freeze_all_but(model, lambda n: in_head(n, ctx.head_modules))
        ctx.notes["trained"] = sorted(ctx.head_modules)
        return model


class BitFit(Method):
    name = "bitfit"
    default_lr = lrs(1e-3, 1e-3, 5e-4)

    def apply(self, model, options, ctx):
        biases = [n for n, _ in model.named_parameters() if n.endswith(".bias") and not in_head(n, ctx.head_modules)]
        if not biases:
            raise ValueError(f"bitfit: {ctx.model_type} has no bias terms outside the head (e.g. Llama); "
                             "use head_only or a LoRA-family method")
        keep = set(biases)
        freeze_all_but(model, lambda n: n in keep or in_head(n, ctx.head_modules))
        ctx.notes["bias_tensors"] = len(biases)
        return model
