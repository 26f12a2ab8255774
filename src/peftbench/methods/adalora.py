"""AdaLoRA through peft, used as its authors intend.

* ``total_step`` is the real number of optimizer steps of the schedule;
* ``tinit`` / ``tfinal`` default to 10% / 20% of it (warm-up without pruning, final fine-tuning at the
  target budget), ``deltaT`` to 1% of it;
* ``update_and_allocate(step)`` runs after every optimizer step (before gradients are zeroed);
* the orthogonal regulariser is added to the loss by peft's AdaLoraModel.forward (orth_reg_weight).
The remaining rank budget is logged each epoch so a run shows the budget shrinking.
"""
from __future__ import annotations

from peft import AdaLoraConfig

from .base import Method
from .lora import LoRA, peft_kwargs, wrap


class AdaLoRA(LoRA):
    name = "adalora"
    default_lr = {"encoder": 1e-3, "encoder-decoder": 1e-3, "decoder": 5e-4}

    def apply(self, model, spec, ctx):
        total = max(ctx.total_steps, 3)
        opts = dict(spec.options)
        tinit = opts.pop("tinit", int(0.1 * total))
        tfinal = opts.pop("tfinal", int(0.2 * total))
        if total - tinit - tfinal < 1:
            raise ValueError(f"adalora: tinit ({tinit}) + tfinal ({tfinal}) must be below the {total} training steps")
        cfg = AdaLoraConfig(
            target_r=spec.r, init_r=opts.pop("init_r", max(spec.r + 1, int(round(spec.r * 1.5)))),
            tinit=tinit, tfinal=tfinal, deltaT=opts.pop("deltaT", max(1, total // 100)), total_step=total,
            lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
            orth_reg_weight=opts.pop("orth_reg_weight", 0.5), **peft_kwargs(spec, ctx), **opts)
        model = wrap(model, cfg, ctx)
        ctx.notes.update(init_r=cfg.init_r, target_r=cfg.target_r, tinit=tinit, tfinal=tfinal,
                         deltaT=cfg.deltaT, total_step=total)
        return model

    def after_step(self, model, step):
        model.base_model.update_and_allocate(step)

    def state(self, model):
        return {"rank_budget": rank_budget(model)}

    def regulariser(self, model):
        """peft's orthogonal regulariser (AdaLoraModel.forward adds it to ``outputs.loss``): the mean over
        lora_A / lora_B of ||P P^T - I||_F (A) or ||P^T P - I||_F (B), times orth_reg_weight."""
        import torch

        tuner = model.base_model
        name = tuner.trainable_adapter_name
        terms = []
        for n, p in tuner.model.named_parameters():
            if ("lora_A" in n or "lora_B" in n) and name in n:
                cov = p @ p.T if "lora_A" in n else p.T @ p
                terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
        if not terms:
            return 0.0
        return tuner.peft_config[name].orth_reg_weight * torch.stack(terms).mean()


def rank_budget(model) -> int:
    """Total rank still in use: the number of non-zero singular values (lora_E) over all adapted layers."""
    total = 0
    for name, p in model.named_parameters():
        if "lora_E" in name:
            total += int((p.detach() != 0).sum())
    return total


__all__ = ["AdaLoRA", "rank_budget", "Method"]
