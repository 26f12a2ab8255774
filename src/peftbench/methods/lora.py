"""LoRA and DoRA through peft; the task head is trainable (``modules_to_save``) and saved with the adapter."""
from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import constants

from .base import Method, MethodContext


def target_modules(spec, ctx: MethodContext, family: str = "LORA"):
    """The user's choice, else peft's default for this method family and model type (attention projections
    for LoRA-like methods), else all linear layers."""
    if spec.target_modules:
        return spec.target_modules
    mapping = getattr(constants, f"TRANSFORMERS_MODELS_TO_{family}_TARGET_MODULES_MAPPING", {})
    default = mapping.get(ctx.model_type)
    return list(default) if default else "all-linear"


def peft_kwargs(spec, ctx: MethodContext, family: str = "LORA") -> dict:
    return dict(task_type=ctx.peft_task_type, target_modules=target_modules(spec, ctx, family),
                modules_to_save=list(ctx.head_modules) or None)


def wrap(model, peft_config, ctx: MethodContext):
    try:
        model = get_peft_model(model, peft_config)
    except (ValueError, TypeError) as exc:  # peft: unsupported layer type or no matching module
        hint = "" if getattr(peft_config, "is_prompt_learning", False) else " (set target_modules in the method spec)"
        raise ValueError(f"cannot apply {type(peft_config).__name__} to {ctx.model_type}: "
                         f"{str(exc).splitlines()[0][:200]}{hint}") from None
    cfg = model.peft_config["default"]
    targets = getattr(cfg, "target_modules", None)  # prompt-based methods have none
    ctx.notes["target_modules"] = sorted(targets) if isinstance(targets, (set, list)) else targets
    # prompt-learning configs keep the task head on the PeftModel instead of in the config
    ctx.notes["modules_to_save"] = sorted(getattr(cfg, "modules_to_save", None) or getattr(model, "modules_to_save", None) or [])
    return model


class PeftMethod(Method):
    """A method that wraps the model in a peft ``PeftModel``: saved as a peft adapter (with the head)."""

    def merge(self, model):
        if isinstance(model, PeftModel):
            return model.merge_and_unload()
        return model

    def save(self, model, folder):
        if isinstance(model, PeftModel):
            model.save_pretrained(str(folder))
        else:
            super().save(model, folder)


class LoRA(PeftMethod):
    name = "lora"
    default_lr = {"encoder": 5e-4, "encoder-decoder": 5e-4, "decoder": 2e-4}
    use_dora = False

    def apply(self, model, spec, ctx):
        cfg = LoraConfig(r=spec.r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                         use_dora=self.use_dora, **peft_kwargs(spec, ctx), **spec.options)
        return wrap(model, cfg, ctx)


class DoRA(LoRA):
    name = "dora"
    use_dora = True
