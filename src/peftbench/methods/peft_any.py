"""Any peft method by its config name: ``{name: peft, label: vera, options: {peft_type: VERA, ...}}``.

Options pass through to the peft config; peftbench fills in what it knows when the config takes it and the
user did not set it: the task type, the task head (``modules_to_save``), ``r``, and target modules (peft's
default for that method and model type, else all linear layers).
"""
from __future__ import annotations

import inspect

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

from .lora import PeftMethod, target_modules, wrap


class AnyPeft(PeftMethod):
    name = "peft"
    default_lr = {"encoder": 5e-4, "encoder-decoder": 5e-4, "decoder": 2e-4}

    def apply(self, model, spec, ctx):
        opts = dict(spec.options)
        kind = str(opts.pop("peft_type", "")).upper()
        known = {str(getattr(k, "value", k)): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
        if kind not in known:
            raise ValueError(f"method 'peft' needs options.peft_type, one of {', '.join(sorted(known))} "
                             f"(got '{kind or 'nothing'}')")
        cls = known[kind]
        params = inspect.signature(cls).parameters
        if "task_type" in params:
            opts.setdefault("task_type", ctx.peft_task_type)
        if "modules_to_save" in params and ctx.head_modules:
            opts.setdefault("modules_to_save", list(ctx.head_modules))
        if "r" in params:
            opts.setdefault("r", spec.r)
        if "target_modules" in params:
            opts.setdefault("target_modules", target_modules(spec, ctx, kind))
        try:
            cfg = cls(**opts)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cls.__name__}: {str(exc).splitlines()[0][:200]}") from None
        ctx.notes["peft_type"] = kind
        return wrap(model, cfg, ctx)
