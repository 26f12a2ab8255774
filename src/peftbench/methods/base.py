"""The method interface: turn a loaded model into the model to train, and hook into the loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from ..config import MethodSpec


@dataclass
class MethodContext:
    family: str  # encoder / encoder-decoder / decoder
    model_type: str
    head_modules: list[str]  # task head submodules: always trainable, saved with the adapter
    peft_task_type: str | None  # e.g. "SEQ_CLS"
    total_steps: int  # optimizer steps of the whole schedule
    notes: dict = field(default_factory=dict)  # what the method chose (target modules, ranks), stored with the run


class Method:
    name = "base"
    # starting learning rate per model family when the config sets none (AdamW, linear decay); a learning
    # rate that suits full fine-tuning starves most PEFT methods, so each method has its own (see README)
    default_lr: dict[str, float] = {"encoder": 1e-4, "encoder-decoder": 1e-4, "decoder": 1e-4}

    @classmethod
    def lr_for(cls, family: str) -> float:
        return cls.default_lr[family]

    def apply(self, model: nn.Module, spec: MethodSpec, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step, before gradients are zeroed."""

    def regulariser(self, model: nn.Module):
        """A method's extra training loss, for tasks whose objective is computed outside the model (multiple
        choice): where the model computes the loss, peft adds it there already (AdaLoRA)."""
        return 0.0

    def state(self, model: nn.Module) -> dict:
        """Method-specific numbers logged each epoch (e.g. AdaLoRA's remaining rank budget)."""
        return {}

    def merge(self, model: nn.Module) -> nn.Module:
        """The model with the method folded into its weights (methods without an adapter: itself)."""
        return model

    def save(self, model: nn.Module, folder) -> None:
        """Save what this method trained (adapter + head, or all trainable weights)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(folder / "trainable.safetensors"))


def freeze_all_but(model: nn.Module, keep) -> None:
    """Train exactly the parameters whose name ``keep(name)`` accepts."""
    for name, p in model.named_parameters():
        p.requires_grad_(keep(name))


def in_head(name: str, heads) -> bool:
    """A parameter or module name inside one of the task head's top-level modules."""
    return name.split(".")[0] in heads
