"""Registries: one line per method, task, architecture (model family), data recipe and tiny model.

Entries are ``"module:attribute"`` strings imported on first use; method and task modules import torch only
inside their functions, so validating a config (which reads their ``Options``) never imports torch.
Adding a method / task / architecture / recipe is one new module plus one line here, or one call to
``register`` (e.g. from a plugin or a test).
"""
from __future__ import annotations

import importlib

REGISTRIES: dict[str, dict[str, str]] = {
    "method": {
        "full": "peftbench.methods.full:FullFineTuning",
        "lora": "peftbench.methods.lora:LoRA",
        "dora": "peftbench.methods.lora:DoRA",
        "adalora": "peftbench.methods.adalora:AdaLoRA",
        "loha": "peftbench.methods.peft_adapters:LoHa",
        "lokr": "peftbench.methods.peft_adapters:LoKr",
        "vera": "peftbench.methods.peft_adapters:VeRA",
        "oft": "peftbench.methods.peft_adapters:OFT",
        "boft": "peftbench.methods.peft_adapters:BOFT",
        "ia3": "peftbench.methods.peft_adapters:IA3",
        "prompt_tuning": "peftbench.methods.prompt:PromptTuning",
        "prefix_tuning": "peftbench.methods.prompt:PrefixTuning",
        "p_tuning": "peftbench.methods.prompt:PTuning",
        "peft": "peftbench.methods.peft_any:AnyPeft",
        "houlsby": "peftbench.methods.bottleneck:Houlsby",
        "pfeiffer": "peftbench.methods.bottleneck:Pfeiffer",
        "bitfit": "peftbench.methods.baselines:BitFit",
        "head_only": "peftbench.methods.baselines:HeadOnly",
    },
    "task": {
        "classification": "peftbench.tasks.classification:Classification",
        "multiple_choice": "peftbench.tasks.multiple_choice:MultipleChoice",
        "seq2seq": "peftbench.tasks.seq2seq:Seq2Seq",
        "token_classification": "peftbench.tasks.token_classification:TokenClassification",
        "question_answering": "peftbench.tasks.question_answering:QuestionAnswering",
        "multi_label": "peftbench.tasks.multi_label:MultiLabel",
    },
    "architecture": {  # tried in order: the first whose matches(config) is true describes the model
        "generic-encoder-decoder": "peftbench.families:GENERIC_ENCODER_DECODER",
        "encoder-decoder": "peftbench.families:ENCODER_DECODER",
        "decoder": "peftbench.families:DECODER",
        "encoder": "peftbench.families:ENCODER",
    },
    "recipe": {
        "demo_sentiment": "peftbench.data.recipes:demo_sentiment",
        "parsinlu_food_binary": "peftbench.data.recipes:parsinlu_food_binary",
        "nusax_sentiment": "peftbench.data.recipes:nusax_sentiment",
    },
    "tiny": {
        "bert": "peftbench.tiny:bert",
        "t5": "peftbench.tiny:t5",
        "bert2bert": "peftbench.tiny:bert2bert",
        "gpt2": "peftbench.tiny:gpt2",
        "llama": "peftbench.tiny:llama",
    },
}


def names(kind: str) -> list[str]:
    return list(REGISTRIES[kind])


def check(kind: str, name: str) -> str:
    if name not in REGISTRIES[kind]:
        raise ValueError(f"'{name}' is not a known {kind}; allowed: {', '.join(REGISTRIES[kind])}")
    return name


def get(kind: str, name: str):
    check(kind, name)
    target = REGISTRIES[kind][name]
    if not isinstance(target, str):
        return target
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def register(kind: str, name: str, target, first: bool = False) -> None:
    """Add ``name`` to a registry: ``target`` is the object or a ``"module:attribute"`` string. ``first`` puts
    it before the others (architectures are tried in order)."""
    if kind not in REGISTRIES:
        raise ValueError(f"'{kind}' is not a registry; allowed: {', '.join(REGISTRIES)}")
    entries = REGISTRIES[kind]
    entries.pop(name, None)
    if first:
        REGISTRIES[kind] = {name: target, **entries}
    else:
        entries[name] = target


def unregister(kind: str, name: str) -> None:
    REGISTRIES[kind].pop(name, None)


def options(kind: str, name: str):
    """The options model a method, task or recipe declares (``Options``), or None."""
    return getattr(get(kind, name), "Options", None)
