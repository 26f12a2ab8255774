"""Prompt-based methods from peft: prompt tuning, prefix tuning and P-tuning (virtual tokens).

``options.num_virtual_tokens`` (default 20); other peft arguments (e.g. ``prompt_tuning_init``) through
``options.peft_config``. The task head stays trainable (peft's ``modules_to_save`` for classification).
transformers' T5ForSequenceClassification takes no input embeddings, and peft cannot size the prompt of a
generic EncoderDecoderModel, so classification with an encoder-decoder model is refused with a clear error.
"""
from __future__ import annotations

from pydantic import Field

from ..families import Family
from .base import lrs
from .peft_method import PeftMethod, PeftOptions


class PromptOptions(PeftOptions):
    num_virtual_tokens: int = Field(20, ge=1)


class PromptTuning(PeftMethod):
    name = "prompt_tuning"
    Options = PromptOptions
    config_cls = "PromptTuningConfig"
    default_lr = lrs(3e-2)

    def extra_options(self, model) -> dict:
        return {}

    def apply(self, model, options, ctx):
        if ctx.family is Family.ENCODER_DECODER and ctx.peft_task_type == "SEQ_CLS":
            raise ValueError(f"{self.name} cannot run classification on an encoder-decoder model "
                             f"({ctx.model_type}): transformers' head takes no input embeddings; use an encoder "
                             "or decoder model, or a LoRA-family method")
        return super().apply(model, options, ctx)

    def config_kwargs(self, o, ctx, model):
        opts = {"num_virtual_tokens": o.num_virtual_tokens, "task_type": ctx.peft_task_type}
        fresh = [m for m in ctx.head_modules if "." in m]  # modules the checkpoint lacked (peft adds the head itself)
        if fresh:
            opts["modules_to_save"] = fresh
        cfg = model.config
        if cfg.model_type == "encoder-decoder":
            # peft cannot read the sizes of a generic EncoderDecoderModel from its config; peftbench's
            # token-level heads on it read the encoder only (one prompt), seq2seq feeds encoder and decoder
            enc = cfg.encoder
            opts.update(token_dim=enc.hidden_size, num_layers=enc.num_hidden_layers,
                        num_attention_heads=enc.num_attention_heads,
                        num_transformer_submodules=1 if ctx.peft_task_type in ("TOKEN_CLS", "QUESTION_ANS") else 2)
        opts.update(self.extra_options(model))
        ctx.notes["num_virtual_tokens"] = o.num_virtual_tokens
        return opts

    merge_note = "virtual tokens, not weight deltas: nothing to merge"

    def merged_view(self, model):
        return None

    def merge(self, model):
        raise ValueError(f"{self.name} adds virtual tokens, not weight deltas: there is nothing to merge into the base "
                         "model; unset train.export_merged (the saved adapter reloads with peft)")


class PrefixTuning(PromptTuning):
    name = "prefix_tuning"
    config_cls = "PrefixTuningConfig"
    default_lr = lrs(1e-2)


class PTuning(PromptTuning):
    name = "p_tuning"
    config_cls = "PromptEncoderConfig"
    default_lr = lrs(3e-3)

    def extra_options(self, model):
        hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "d_model", None)
        return {"encoder_hidden_size": hidden} if hidden else {}
