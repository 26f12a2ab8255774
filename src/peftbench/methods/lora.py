"""LoRA and DoRA through peft (rsLoRA, PiSSA and other initialisations through the options)."""
from __future__ import annotations

from typing import Literal, Union

from .base import lrs
from .peft_method import LowRankOptions, PeftMethod


class LoRAOptions(LowRankOptions):
    use_rslora: bool = False  # scale by alpha / sqrt(r) instead of alpha / r
    init_lora_weights: Union[bool, str] = True  # e.g. gaussian, pissa, olora
    bias: Literal["none", "all", "lora_only"] = "none"


class LoRA(PeftMethod):
    name = "lora"
    Options = LoRAOptions
    config_cls = "LoraConfig"
    default_lr = lrs(5e-4, 5e-4, 2e-4)
    fixed = {"use_dora": False}


class DoRA(LoRA):
    name = "dora"
    fixed = {"use_dora": True}
