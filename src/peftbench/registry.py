"""Registries: one line per method, task, data recipe and tiny model family.

Entries are ``"module:attribute"`` strings imported on first use, so validating a config never
imports torch.  Adding a method / task / recipe is one new module plus one line here.
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
    module, attr = REGISTRIES[kind][name].split(":")
    return getattr(importlib.import_module(module), attr)
