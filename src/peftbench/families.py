"""Everything that depends on the model's architecture, in one table.

A model *family* (``Family``) is what a learning-rate table or a method needs to know: encoder, encoder-decoder
or decoder.  An ``Architecture`` adds what loading and batching need: which class gives each kind of task
head, which side to pad on, whether generation continues the prompt (decoders) or reads an encoder.
Tasks ask for a head *kind* (``HeadKind``) and never name a family or a model class; the run picks the
class from the matching architecture.

Architectures are registered in ``registry`` ("architecture", or a plugin's ``peftbench.architectures`` entry points) and tried in order; the first whose
``matches(config)`` is true describes the model.  A new family of models is one module defining an
``Architecture`` plus one registry line (see docs/architecture.md).  This module imports no torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping


class Family(str, Enum):
    ENCODER = "encoder"
    ENCODER_DECODER = "encoder-decoder"
    DECODER = "decoder"

    def __str__(self) -> str:  # "decoder", not "Family.DECODER", in messages and stored results
        return self.value


class HeadKind(str, Enum):
    SEQUENCE = "sequence_classification"  # one vector of scores per input (classification, multiple choice)
    TOKEN = "token_classification"  # one vector per input token (NER)
    SPAN = "question_answering"  # start / end scores per token
    GENERATION = "generation"  # a language-model head that generates text


# peft's task type and the names of the head submodules (trainable, saved with the adapter) per head kind
PEFT_TASK_TYPE = {HeadKind.SEQUENCE: "SEQ_CLS", HeadKind.TOKEN: "TOKEN_CLS", HeadKind.SPAN: "QUESTION_ANS"}
HEAD_MODULES = {HeadKind.SEQUENCE: ("classifier", "score", "classification_head"),
                HeadKind.TOKEN: ("classifier", "score"), HeadKind.SPAN: ("qa_outputs",), HeadKind.GENERATION: ()}


@dataclass(frozen=True)
class Head:
    """What a task asks of the model: the kind of head and its outputs (``labels`` name them; ``num_outputs``
    overrides their count, e.g. one score per multiple-choice pair)."""

    kind: HeadKind
    labels: tuple[str, ...] = ()
    num_outputs: int | None = None
    problem_type: str | None = None  # e.g. multi_label_classification
    pooling: str = "cls"  # a sequence head: "cls" (the model's own) or "mean" (heads.MeanPooledForSequenceClassification)

    def config_updates(self) -> dict:
        if self.kind is HeadKind.GENERATION:
            return {}
        if self.num_outputs is not None:
            return {"num_labels": self.num_outputs}
        out = {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
               "label2id": {lab: i for i, lab in enumerate(self.labels)}}
        if self.problem_type:
            out["problem_type"] = self.problem_type
        return out


@dataclass(frozen=True)
class Architecture:
    """How to load, pad and adapt one kind of model. ``heads`` maps a head kind to ``"module:Class"`` (a
    transformers Auto class or a peftbench head); a kind missing from it is refused with ``refuse``."""

    name: str
    family: Family
    matches: Callable[[Any], bool]
    heads: Mapping[HeadKind, str]
    padding_side: str = "right"
    refuse: Mapping[HeadKind, str] = field(default_factory=dict)

    @property
    def continues_prompt(self) -> bool:
        """Generation appends to the input (a causal LM) rather than decoding from an encoder's states."""
        return self.family is Family.DECODER

    def head_class(self, kind: HeadKind, what: str = "this task"):
        if kind not in self.heads:
            raise ValueError(f"{what}: " + self.refuse.get(kind, f"needs a {kind.value} head, which {self.name} "
                                                                 "models do not have"))
        module, attr = self.heads[kind].split(":")
        return getattr(importlib.import_module(module), attr)

    def peft_task_type(self, kind: HeadKind) -> str:
        if kind is HeadKind.GENERATION:
            return "CAUSAL_LM" if self.continues_prompt else "SEQ_2_SEQ_LM"
        return PEFT_TASK_TYPE[kind]


def head_modules(model, kind: HeadKind) -> list[str]:
    """The task head's top-level submodules present on ``model`` (trained by every method, saved with it)."""
    return [n for n in HEAD_MODULES[kind] if hasattr(model, n)]


def model_type(config) -> str:
    """The architecture's model type (a generic EncoderDecoderModel is described by its encoder: bert2bert -> bert)."""
    return config.encoder.model_type if config.model_type == "encoder-decoder" else config.model_type


def detect(config) -> Architecture:
    from . import registry

    for name in registry.names("architecture"):
        arch = registry.get("architecture", name)
        if arch.matches(config):
            return arch
    raise ValueError(f"no registered architecture matches model type '{config.model_type}'")


# ----------------------------------------------------------------------------- the built-in architectures

_AUTO = "transformers:AutoModelFor"
_TOKEN_LEVEL = {HeadKind.SEQUENCE: _AUTO + "SequenceClassification", HeadKind.TOKEN: _AUTO + "TokenClassification",
                HeadKind.SPAN: _AUTO + "QuestionAnswering"}


def _is_generic_encoder_decoder(config) -> bool:
    return config.model_type == "encoder-decoder"


def _is_encoder_decoder(config) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def _is_decoder(config) -> bool:
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    mt = config.model_type
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


GENERIC_ENCODER_DECODER = Architecture(  # transformers' EncoderDecoderModel (e.g. bert2bert): peftbench's heads
    name="generic-encoder-decoder", family=Family.ENCODER_DECODER, matches=_is_generic_encoder_decoder,
    heads={HeadKind.SEQUENCE: "peftbench.heads:EncoderDecoderForSequenceClassification",
           HeadKind.TOKEN: "peftbench.heads:EncoderDecoderForTokenClassification",
           HeadKind.SPAN: "peftbench.heads:EncoderDecoderForQuestionAnswering",
           HeadKind.GENERATION: _AUTO + "Seq2SeqLM"})
ENCODER_DECODER = Architecture(name="encoder-decoder", family=Family.ENCODER_DECODER, matches=_is_encoder_decoder,
                               heads={**_TOKEN_LEVEL, HeadKind.GENERATION: _AUTO + "Seq2SeqLM"})
# left padding: the last position is every sequence's last real token (also when a prompt method feeds
# inputs_embeds, so transformers cannot find pads), and generation continues right after the prompt
DECODER = Architecture(name="decoder", family=Family.DECODER, matches=_is_decoder, padding_side="left",
                       heads={**_TOKEN_LEVEL, HeadKind.GENERATION: _AUTO + "CausalLM"})
ENCODER = Architecture(name="encoder", family=Family.ENCODER, matches=lambda config: True, heads=_TOKEN_LEVEL,
                       refuse={HeadKind.GENERATION: "needs an encoder-decoder or decoder model; the model is an encoder"})
