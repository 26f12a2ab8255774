"""Other weight-adapter methods from peft: LoHa (Hadamard product of low-rank pairs) and IA3 (learned
rescaling vectors). Target modules default to peft's per-model-type choice for each method."""
from __future__ import annotations

from peft import IA3Config, LoHaConfig
from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING

from .lora import PeftMethod, peft_kwargs, wrap


class LoHa(PeftMethod):
    name = "loha"
    default_lr = {"encoder": 1e-3, "encoder-decoder": 1e-3, "decoder": 5e-4}

    def apply(self, model, spec, ctx):
        cfg = LoHaConfig(r=spec.r, alpha=spec.lora_alpha, module_dropout=spec.lora_dropout,
                         **peft_kwargs(spec, ctx, "LOHA"), **spec.options)
        return wrap(model, cfg, ctx)


class IA3(PeftMethod):
    name = "ia3"
    default_lr = {"encoder": 3e-3, "encoder-decoder": 3e-3, "decoder": 3e-3}

    def apply(self, model, spec, ctx):
        opts = dict(spec.options)
        kw = peft_kwargs(spec, ctx, "IA3")
        if "feedforward_modules" not in opts:
            default_ff = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(ctx.model_type, [])
            targets = kw["target_modules"]
            opts["feedforward_modules"] = [m for m in default_ff if targets != "all-linear" and m in targets]
        model = wrap(model, IA3Config(**kw, **opts), ctx)
        ctx.notes["feedforward_modules"] = sorted(opts["feedforward_modules"])
        return model
