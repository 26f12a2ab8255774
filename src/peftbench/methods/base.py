"""The method interface: turn a loaded model into the model to train, and hook into the loop.

A method declares its options (``Options``, a pydantic model validated with the grid, before any model
loads) and starting learning rates per model family; ``apply`` gets the validated options.  This module
imports no torch (validation reads ``Options``); method modules import their libraries inside functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..families import Family
from ..options import NoOptions, Options


@dataclass
class MethodContext:
    family: Family
    model_type: str
    # what every method trains and saves beside its own parameters: the task head's top-level submodules and
    # the modules the checkpoint did not provide (dotted paths, e.g. a BERT pooler created at random on load)
    head_modules: list[str]
    peft_task_type: str | None  # e.g. "SEQ_CLS"
    total_steps: int  # optimizer steps of the whole schedule
    notes: dict = field(default_factory=dict)  # what the method chose (target modules, ranks), stored with the run

    def __post_init__(self):
        self.family = Family(self.family)


class Method:
    name = "base"
    Options: ClassVar[type[Options]] = NoOptions
    # starting learning rate per model family when the config sets none (AdamW, linear decay); a learning
    # rate that suits full fine-tuning starves most PEFT methods, so each method has its own (see README)
    default_lr: ClassVar[dict[Family, float]] = {Family.ENCODER: 1e-4, Family.ENCODER_DECODER: 1e-4,
                                                 Family.DECODER: 1e-4}

    @classmethod
    def lr_for(cls, family: Family | str) -> float:
        return cls.default_lr[Family(family)]

    def apply(self, model, options: Options, ctx: MethodContext):
        raise NotImplementedError

    def after_step(self, model, step: int) -> None:
        """Called after every optimizer step, before gradients are zeroed."""

    def regulariser(self, model):
        """A method's extra training loss, added to the task loss (AdaLoRA's orthogonality penalty)."""
        return 0.0

    def state(self, model) -> dict:
        """Method-specific numbers logged each epoch (e.g. AdaLoRA's remaining rank budget)."""
        return {}

    def checkpoint_state(self, model) -> dict:
        """What this method keeps outside the model's parameters and buffers that the rest of training depends on
        (AdaLoRA's importance scores and rank pattern); saved with a run's checkpoint (``run/checkpoint.py``)."""
        return {}

    def restore_checkpoint_state(self, model, state: dict) -> None:
        """Put back what ``checkpoint_state`` returned."""

    def may_stop(self, model, step: int) -> bool:
        """Whether early stopping may end training after ``step`` optimizer steps (AdaLoRA: only once its rank
        budget has reached the target, so that it is compared at the budget it was given)."""
        return True

    def merge(self, model):
        """The model with the method folded into its weights (methods without an adapter: itself)."""
        return model

    # why ``merged_view`` is None (the inference-cost measurement records it)
    merge_note = "nothing to merge: the method trains the model's own weights"

    def merged_view(self, model):
        """A context manager (a callable giving one) inside which ``model`` computes with the method folded into
        its weights, unfolded again on exit; None where the method cannot be merged or has nothing to merge."""
        return None

    def save(self, model, folder, state: dict | None = None) -> None:
        """Save what this method trained (adapter + head, or all trainable weights). ``state``: the full weights
        by parameter name where the model's own are shards (FSDP)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({n: (p if state is None else state[n]).detach().cpu().contiguous()
                   for n, p in model.named_parameters() if p.requires_grad}, str(folder / "trainable.safetensors"))


def lrs(encoder: float, encoder_decoder: float | None = None, decoder: float | None = None) -> dict[Family, float]:
    """A default learning-rate table (encoder-decoder and decoder default to the encoder's)."""
    return {Family.ENCODER: encoder, Family.ENCODER_DECODER: encoder if encoder_decoder is None else encoder_decoder,
            Family.DECODER: encoder if decoder is None else decoder}


def freeze_all_but(model, keep) -> None:
    """Train exactly the parameters whose name ``keep(name)`` accepts."""
    for name, p in model.named_parameters():
        p.requires_grad_(keep(name))


def in_head(name: str, heads) -> bool:
    """A parameter or module name inside one of the modules every method trains (``MethodContext.head_modules``:
    top-level names, or dotted paths such as ``bert.pooler``)."""
    return any(name == h or name.startswith(h + ".") for h in heads)
