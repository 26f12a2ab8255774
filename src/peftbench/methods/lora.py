"""LoRA and DoRA through peft; the task head is trainable (``modules_to_save``) and saved with the adapter."""
from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

from .base import Method, MethodContext


def target_modules(spec, ctx: MethodContext):
    """The user's choice, else peft's attention-projection default for the model type, else all linear layers."""
    if spec.target_modules:
        return spec.target_modules
    default = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(ctx.model_type)
    return list(default) if default else "all-linear"


def peft_kwargs(spec, ctx: MethodContext) -> dict:
    return dict(task_type=ctx.peft_task_type, target_modules=target_modules(spec, ctx),
                modules_to_save=list(ctx.head_modules) or None)


def wrap(model, peft_config, ctx: MethodContext):
    try:
        model = get_peft_model(model, peft_config)
    except ValueError as exc:
        raise ValueError(f"cannot apply {type(peft_config).__name__} to {ctx.model_type}: "
                         f"{str(exc).splitlines()[0][:200]} (set target_modules in the method spec)") from None
    cfg = model.peft_config["default"]
    ctx.notes["target_modules"] = sorted(cfg.target_modules) if isinstance(cfg.target_modules, (set, list)) else cfg.target_modules
    ctx.notes["modules_to_save"] = sorted(cfg.modules_to_save or [])
    return model


class LoRA(Method):
    name = "lora"
    use_dora = False

    def apply(self, model, spec, ctx):
        cfg = LoraConfig(r=spec.r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                         use_dora=self.use_dora, **peft_kwargs(spec, ctx), **spec.options)
        return wrap(model, cfg, ctx)

    def save(self, model, folder):
        if isinstance(model, PeftModel):
            model.save_pretrained(str(folder))
        else:
            super().save(model, folder)


class DoRA(LoRA):
    name = "dora"
    use_dora = True
