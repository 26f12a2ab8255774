"""Registries: one line per method, task, architecture (model family), data recipe and tiny model.

Entries are ``"module:attribute"`` strings imported on first use; method and task modules import torch only
inside their functions, so validating a config (which reads their ``Options``) never imports torch.
Adding a method / task / architecture / recipe is one new module plus one line here.

From outside the project, an installed package declares entry points (``pyproject.toml``)::

    [project.entry-points."peftbench.methods"]
    head_and_norms = "my_package.methods:HeadAndNorms"

(groups ``peftbench.methods``, ``peftbench.tasks``, ``peftbench.architectures``, ``peftbench.recipes``,
``peftbench.tiny``, ``peftbench.trackers``). They are read from the installed packages' metadata by every process that looks a name
up — the grid's, each run's worker, ``--jobs`` slots, Ray tasks, ``plan`` — so a plugin reaches all of them.
Plugin architectures are tried before the built-in ones. ``register`` / ``@registered_as`` add an entry in
this process only (tests, notebooks with in-process runs).
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

GROUPS = {"method": "peftbench.methods", "task": "peftbench.tasks", "architecture": "peftbench.architectures",
          "recipe": "peftbench.recipes", "tiny": "peftbench.tiny", "tracker": "peftbench.trackers"}  # registry -> entry-point group
_plugins_loaded = False

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
        "regression": "peftbench.tasks.regression:Regression",
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
    "tracker": {
        "tensorboard": "peftbench.trackers.tensorboard:TensorBoard",
        "mlflow": "peftbench.trackers.mlflow:MLflow",
        "trackio": "peftbench.trackers.trackio:Trackio",
        "wandb": "peftbench.trackers.wandb:WandB",
    },
    "tiny": {
        "bert": "peftbench.tiny:bert",
        "t5": "peftbench.tiny:t5",
        "bert2bert": "peftbench.tiny:bert2bert",
        "gpt2": "peftbench.tiny:gpt2",
        "llama": "peftbench.tiny:llama",
    },
}


def load_plugins() -> None:
    """Add the entry points of installed packages (once per process; the built-in names cannot be replaced)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for kind, group in GROUPS.items():
        found = {ep.name: ep.value for ep in entry_points(group=group) if ep.name not in REGISTRIES[kind]}
        if kind == "architecture":  # tried in order: a plugin's specific architecture before the generic ones
            REGISTRIES[kind] = {**found, **REGISTRIES[kind]}
        else:
            REGISTRIES[kind].update(found)


def names(kind: str) -> list[str]:
    load_plugins()
    return list(REGISTRIES[kind])


def check(kind: str, name: str) -> str:
    load_plugins()
    if name not in REGISTRIES[kind]:
        raise ValueError(f"'{name}' is not a known {kind}; allowed: {', '.join(REGISTRIES[kind])}")
    return name


def get(kind: str, name: str):
    check(kind, name)
    target = REGISTRIES[kind][name]
    if not isinstance(target, str):
        return target
    module, attr = target.split(":")
    obj = getattr(importlib.import_module(module), attr)
    declared = getattr(obj, "name", name)
    if kind in ("method", "task", "architecture") and isinstance(declared, str) and declared != name:
        raise ValueError(f"{kind} '{name}' ({target}) calls itself '{declared}'; give it one name: the entry "
                         f"point's (or the registry key) and its own ``name`` must be the same")
    return obj


def register(kind: str, name: str, target, first: bool = False) -> None:
    """Add ``name`` to a registry in this process: ``target`` is the object or a ``"module:attribute"`` string.
    ``first`` puts it before the others (architectures are tried in order). Runs in their own processes do not
    see it: an installed plugin's entry points reach every process."""
    load_plugins()
    if kind not in REGISTRIES:
        raise ValueError(f"'{kind}' is not a registry; allowed: {', '.join(REGISTRIES)}")
    entries = REGISTRIES[kind]
    entries.pop(name, None)
    if first:
        REGISTRIES[kind] = {name: target, **entries}
    else:
        entries[name] = target


def registered_as(kind: str, first: bool = False):
    """Class (or object) decorator: register under its own ``name`` attribute (the name is given once)."""
    def add(obj):
        register(kind, obj.name, obj, first=first)
        return obj
    return add


def unregister(kind: str, name: str) -> None:
    REGISTRIES[kind].pop(name, None)


def options(kind: str, name: str):
    """The options model a method, task or recipe declares (``Options``), or None."""
    return getattr(get(kind, name), "Options", None)
