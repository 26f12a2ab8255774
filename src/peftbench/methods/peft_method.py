"""Methods that wrap the model in a peft ``PeftModel``: shared options, target modules, wrapping, saving.

A peft method names its config class (``config_cls``) and maps its typed options to that config's
arguments (``config_kwargs``); ``peft_config`` in the options passes any other argument through unchanged
(peft checks it).  The task head is trainable (``modules_to_save``) and saved with the adapter.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import Field

from ..options import Options
from .base import Method, MethodContext
from ..errors import first_line


class PeftOptions(Options):
    target_modules: Optional[Union[list[str], str]] = None  # None: peft's default for the model type, else all-linear
    peft_config: dict[str, Any] = Field(default_factory=dict)  # passed to the peft config as is


class LowRankOptions(PeftOptions):
    r: int = Field(8, ge=1)
    lora_alpha: float = Field(32, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)


def target_modules(options, ctx: MethodContext, family: str = "LORA"):
    """The user's choice, else peft's default for this method family and model type (attention projections
    for LoRA-like methods), else all linear layers."""
    if getattr(options, "target_modules", None):
        return options.target_modules
    from peft.utils import constants

    mapping = getattr(constants, f"TRANSFORMERS_MODELS_TO_{family}_TARGET_MODULES_MAPPING", {})
    default = mapping.get(ctx.model_type)
    return list(default) if default else "all-linear"


def peft_kwargs(options, ctx: MethodContext, family: str = "LORA") -> dict:
    return dict(task_type=ctx.peft_task_type, target_modules=target_modules(options, ctx, family),
                modules_to_save=list(ctx.head_modules) or None)


def wrap(model, peft_config, ctx: MethodContext):
    from peft import get_peft_model

    try:
        model = get_peft_model(model, peft_config)
    except (ValueError, TypeError) as exc:  # peft: unsupported layer type or no matching module
        hint = "" if getattr(peft_config, "is_prompt_learning", False) else " (set target_modules in the method options)"
        raise ValueError(f"cannot apply {type(peft_config).__name__} to {ctx.model_type}: "
                         f"{first_line(exc)}{hint}") from None
    cfg = model.peft_config["default"]
    targets = getattr(cfg, "target_modules", None)  # prompt-based methods have none
    ctx.notes["target_modules"] = sorted(targets) if isinstance(targets, (set, list)) else targets
    # prompt-learning configs keep the task head on the PeftModel instead of in the config
    ctx.notes["modules_to_save"] = sorted(getattr(cfg, "modules_to_save", None) or getattr(model, "modules_to_save", None) or [])
    return model


class PeftMethod(Method):
    """A method that wraps the model in a peft ``PeftModel``: saved as a peft adapter (with the head)."""

    config_cls = ""  # the peft config class's name
    peft_family = "LORA"  # which of peft's default target-module tables applies
    renames: dict[str, str] = {}  # option name -> the peft config's argument name
    fixed: dict = {}  # arguments every run of this method sets

    def config_kwargs(self, options, ctx: MethodContext, model) -> dict:
        """The options under the config's argument names, the fixed arguments, task type, targets and head."""
        own = options.model_dump(exclude={"target_modules", "peft_config"})
        return {**{self.renames.get(k, k): v for k, v in own.items()}, **self.fixed,
                **peft_kwargs(options, ctx, self.peft_family)}

    def build_config(self, options, ctx: MethodContext, model):
        import peft

        kw = {**self.config_kwargs(options, ctx, model), **options.peft_config}
        try:
            return getattr(peft, self.config_cls)(**kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.name}: {first_line(exc)}") from None

    def apply(self, model, options, ctx):
        return wrap(model, self.build_config(options, ctx, model), ctx)

    def merge(self, model):
        from peft import PeftModel

        return model.merge_and_unload() if isinstance(model, PeftModel) else model

    def merged_view(self, model):
        """peft's ``merge_adapter`` / ``unmerge_adapter``: the same model object, adapter folded in and out. Unmerging
        subtracts (or, for IA3, divides) again, which is exact only up to rounding: the base weights the merge
        touches are copied to the CPU first and put back bit for bit afterwards."""
        from contextlib import contextmanager

        import torch
        from peft import PeftModel

        if not isinstance(model, PeftModel) or model.peft_config["default"].is_prompt_learning:
            return None

        @contextmanager
        def merged():
            base = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if ".base_layer." in n}
            model.merge_adapter()
            try:
                yield model
            finally:
                model.unmerge_adapter()
                with torch.no_grad():
                    for n, p in model.named_parameters():
                        if n in base:
                            p.copy_(base[n].to(p.device))

        return merged

    def save(self, model, folder, state=None):
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model.save_pretrained(str(folder), **({"state_dict": state} if state is not None else {}))
        else:
            super().save(model, folder, state)
