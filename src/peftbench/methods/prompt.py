"""Prompt-based methods from peft: prompt tuning, prefix tuning and P-tuning (virtual tokens).

``options.num_virtual_tokens`` (default 20) and any other option pass through to the peft config. The task
head stays trainable (peft's ``modules_to_save`` for classification). transformers' T5ForSequenceClassification
takes no input embeddings, and peft cannot size the prompt of a generic EncoderDecoderModel, so
classification with an encoder-decoder model is refused with a clear error.
"""
from __future__ import annotations

from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

from ..models import ENCODER_DECODER
from .lora import PeftMethod, wrap


class PromptTuning(PeftMethod):
    name = "prompt_tuning"
    default_lr = {"encoder": 3e-2, "encoder-decoder": 3e-2, "decoder": 3e-2}
    config_cls = PromptTuningConfig

    def extra_options(self, model, opts) -> dict:
        return {}

    def apply(self, model, spec, ctx):
        if ctx.family == ENCODER_DECODER and ctx.peft_task_type == "SEQ_CLS":
            raise ValueError(f"{self.name} cannot run classification on an encoder-decoder model "
                             f"({ctx.model_type}): transformers' head takes no input embeddings; use an encoder "
                             "or decoder model, or a LoRA-family method")
        opts = dict(spec.options)
        opts.setdefault("num_virtual_tokens", 20)
        cfg = model.config
        if cfg.model_type == "encoder-decoder":
            # peft cannot read the sizes of a generic EncoderDecoderModel from its config; peftbench's
            # token-level heads on it read the encoder only (one prompt), seq2seq feeds encoder and decoder
            enc = cfg.encoder
            sizes = dict(token_dim=enc.hidden_size, num_layers=enc.num_hidden_layers,
                         num_attention_heads=enc.num_attention_heads,
                         num_transformer_submodules=1 if ctx.peft_task_type in ("TOKEN_CLS", "QUESTION_ANS") else 2)
            opts.update({k: v for k, v in sizes.items() if k not in opts})
        opts.update({k: v for k, v in self.extra_options(model, opts).items() if k not in opts})
        cfg = self.config_cls(task_type=ctx.peft_task_type, **opts)
        model = wrap(model, cfg, ctx)
        ctx.notes["num_virtual_tokens"] = cfg.num_virtual_tokens
        return model


    def merge(self, model):
        raise ValueError(f"{self.name} adds virtual tokens, not weight deltas: there is nothing to merge into the base "
                         "model; unset train.export_merged (the saved adapter reloads with peft)")


class PrefixTuning(PromptTuning):
    name = "prefix_tuning"
    default_lr = {"encoder": 1e-2, "encoder-decoder": 1e-2, "decoder": 1e-2}
    config_cls = PrefixTuningConfig


class PTuning(PromptTuning):
    name = "p_tuning"
    default_lr = {"encoder": 3e-3, "encoder-decoder": 3e-3, "decoder": 3e-3}
    config_cls = PromptEncoderConfig

    def extra_options(self, model, opts):
        hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "d_model", None)
        return {"encoder_hidden_size": hidden} if hidden else {}
