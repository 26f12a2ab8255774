"""Any peft method by its config name: ``{name: peft, label: fourierft, options: {peft_type: FOURIERFT, ...}}``.

The escape hatch for peft methods without an entry of their own (lora, dora, adalora, loha, lokr, vera, oft,
boft, ia3 and the prompt methods have one, with typed options). Options other than ``peft_type`` pass through
to the peft config, which checks them; peftbench fills in what it knows when the config takes it and the user
did not set it: the task type, the task head (``modules_to_save``) and target modules (peft's default for that
method and model type, else all linear layers).
"""
from __future__ import annotations

import inspect

from pydantic import ConfigDict

from .base import lrs
from .peft_method import PeftMethod, PeftOptions, target_modules
from ..errors import first_line


class AnyPeftOptions(PeftOptions):
    model_config = ConfigDict(extra="allow", frozen=True)  # the peft config's own arguments
    peft_type: str


class AnyPeft(PeftMethod):
    name = "peft"
    Options = AnyPeftOptions
    default_lr = lrs(5e-4, 5e-4, 2e-4)

    def build_config(self, options, ctx, model):
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

        kind = options.peft_type.upper()
        known = {str(getattr(k, "value", k)): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
        if kind not in known:
            raise ValueError(f"method 'peft' needs options.peft_type, one of {', '.join(sorted(known))} "
                             f"(got '{options.peft_type}')")
        cls = known[kind]
        opts = {**(options.model_extra or {}), **options.peft_config}
        params = inspect.signature(cls).parameters
        if "task_type" in params:
            opts.setdefault("task_type", ctx.peft_task_type)
        if "modules_to_save" in params and ctx.head_modules:
            opts.setdefault("modules_to_save", list(ctx.head_modules))
        if "target_modules" in params:
            opts.setdefault("target_modules", target_modules(options, ctx, kind))
        try:
            cfg = cls(**opts)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cls.__name__}: {first_line(exc)}") from None
        ctx.notes["peft_type"] = kind
        return cfg
