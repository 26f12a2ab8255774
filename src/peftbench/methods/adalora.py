"""AdaLoRA through peft, used as its authors intend.

* ``total_step`` is the real number of optimizer steps of the schedule;
* ``tinit`` / ``tfinal`` default to 10% / 20% of it (warm-up without pruning, final fine-tuning at the
  target budget), ``deltaT`` to 1% of it;
* ``update_and_allocate(step)`` runs after every optimizer step (before gradients are zeroed);
* the orthogonal regulariser (``orth_reg_weight``) is added to the task loss by the run (``regulariser``),
  the same penalty peft's AdaLoraModel.forward adds when the model computes the loss.
``r`` is the target rank (peft's ``target_r``). The remaining rank budget is logged each epoch.
"""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from .base import lrs
from .lora import LoRA
from .peft_method import LowRankOptions, peft_kwargs


class AdaLoRAOptions(LowRankOptions):
    init_r: Optional[int] = Field(None, ge=1)  # None: 1.5 x r
    tinit: Optional[int] = Field(None, ge=0)  # None: 10% of the optimizer steps
    tfinal: Optional[int] = Field(None, ge=0)  # None: 20% of the optimizer steps
    deltaT: Optional[int] = Field(None, ge=1)  # None: 1% of the optimizer steps
    orth_reg_weight: float = Field(0.5, ge=0)


class AdaLoRA(LoRA):
    name = "adalora"
    Options = AdaLoRAOptions
    config_cls = "AdaLoraConfig"
    default_lr = lrs(1e-3, 1e-3, 5e-4)

    def config_kwargs(self, o, ctx, model):
        total = max(ctx.total_steps, 3)
        tinit = int(0.1 * total) if o.tinit is None else o.tinit
        tfinal = int(0.2 * total) if o.tfinal is None else o.tfinal
        if total - tinit - tfinal < 1:
            raise ValueError(f"adalora: tinit ({tinit}) + tfinal ({tfinal}) must be below the {total} training steps")
        init_r = o.init_r or max(o.r + 1, int(round(o.r * 1.5)))
        delta = o.deltaT or max(1, total // 100)
        ctx.notes.update(init_r=init_r, target_r=o.r, tinit=tinit, tfinal=tfinal, deltaT=delta, total_step=total)
        return dict(target_r=o.r, init_r=init_r, tinit=tinit, tfinal=tfinal, deltaT=delta, total_step=total,
                    lora_alpha=o.lora_alpha, lora_dropout=o.lora_dropout, orth_reg_weight=o.orth_reg_weight,
                    **peft_kwargs(o, ctx))

    def after_step(self, model, step):
        model.base_model.update_and_allocate(step)

    def state(self, model):
        return {"rank_budget": rank_budget(model)}

    def checkpoint_state(self, model):
        """peft's rank allocator keeps its importance scores (and the config its rank pattern) outside the
        parameters; a resumed run needs them to prune as the uninterrupted run does."""
        allocator = model.base_model.rankallocator
        return {"ipt": allocator.ipt, "exp_avg_ipt": allocator.exp_avg_ipt, "exp_avg_unc": allocator.exp_avg_unc,
                "rank_pattern": model.peft_config["default"].rank_pattern}

    def restore_checkpoint_state(self, model, state):
        allocator = model.base_model.rankallocator
        device = next(model.parameters()).device
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            setattr(allocator, key, {n: t.to(device) for n, t in state[key].items()})
        model.peft_config["default"].rank_pattern = state["rank_pattern"]

    def may_stop(self, model, step):
        cfg = model.peft_config["default"]
        return step >= cfg.total_step - cfg.tfinal

    def save(self, model, folder, state=None):
        """The adapter as evaluated: peft would cut the layers to the final ``rank_pattern``, which differs from
        the restored best epoch's and changes the rank scaling on reload; saved at ``init_r`` with the pruned
        singular values at zero, it reloads into exactly the evaluated model. The rank pattern is saved beside."""
        import json

        cfg = model.peft_config["default"]
        pattern, cfg.rank_pattern = cfg.rank_pattern, None
        try:
            super().save(model, folder, state)
        finally:
            cfg.rank_pattern = pattern
        params = model.named_parameters() if state is None else state.items()
        ranks = {name.rsplit(".lora_E", 1)[0]: int((p.detach() != 0).sum()) for name, p in params if "lora_E" in name}
        (folder / "rank_budget.json").write_text(json.dumps({"total": sum(ranks.values()), "per_layer": ranks}, indent=1))

    def regulariser(self, model):
        """peft's orthogonal regulariser: the mean over lora_A / lora_B of ||P P^T - I||_F (A) or
        ||P^T P - I||_F (B), times orth_reg_weight."""
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


__all__ = ["AdaLoRA", "rank_budget"]
