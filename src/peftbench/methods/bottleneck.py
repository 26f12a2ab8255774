"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), written for transformers 5.

An adapter is ``h -> h + W_up(act(W_down h))`` with a hidden size of ``hidden / reduction_factor``,
placed on the output projection of a sub-layer (before its residual connection and layer norm, as in
Houlsby): after attention and after the feed-forward block (``houlsby``), or after the feed-forward block
only (``pfeiffer``).  ``W_up`` starts at zero, so the adapted model starts identical to the base model.
Adapters are child modules of the projection they follow (``...output.dense.adapter.down.weight``), so
base weight names are unchanged and the adapter weights are easy to find for later analysis.

Options (``method.options``): ``reduction_factor`` (default 16), ``activation`` (relu | gelu | silu | tanh,
default relu), ``train_layer_norms`` (default false), ``attn_modules`` / ``ffn_modules`` (regular expressions
over module names, for architectures without a built-in pattern).  The variant is the method's name.
"""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field

from ..options import Options
from .base import Method, freeze_all_but, in_head, lrs

# regexes over module names: the output projection of the attention sub-layer and of the feed-forward block
PATTERNS = {
    "bert": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "t5": (r"(SelfAttention|EncDecAttention)\.o$", r"DenseReluDense\.wo$"),
    "gpt2": (r"attn\.c_proj$", r"mlp\.c_proj$"),
    "llama": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "gpt_neox": (r"attention\.dense$", r"mlp\.dense_4h_to_h$"),
}
for _alias, _base in {"roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "distilbert": None,
                      "mt5": "t5", "umt5": "t5", "gemma": "llama", "gemma2": "llama", "gemma3": "llama",
                      "gemma3_text": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama",
                      "phi3": "llama"}.items():
    if _base:
        PATTERNS[_alias] = PATTERNS[_base]
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")


class BottleneckOptions(Options):
    reduction_factor: int = Field(16, ge=1)  # bottleneck size = hidden size / reduction_factor
    activation: Literal[ACTIVATIONS] = "relu"
    train_layer_norms: bool = False
    attn_modules: Optional[str] = None  # regex over module names: the attention sub-layer's output projection
    ffn_modules: Optional[str] = None  # regex: the feed-forward block's output projection


def _add_adapter(module, inputs, output):
    return module.adapter(output)


def _out_features(module) -> int:
    if hasattr(module, "out_features"):
        return module.out_features
    if hasattr(module, "nf"):  # GPT-2 Conv1D
        return module.nf
    raise ValueError(f"cannot tell the output size of {type(module).__name__}")


class Bottleneck(Method):
    name = "bottleneck"
    Options = BottleneckOptions
    default_lr = lrs(5e-4, 5e-4, 3e-4)
    variant = "houlsby"

    def apply(self, model, o, ctx):
        from .bottleneck_layer import BottleneckAdapter

        default = PATTERNS.get(ctx.model_type)
        attn = o.attn_modules or (default[0] if default else None)
        ffn = o.ffn_modules or (default[1] if default else None)
        if ffn is None:
            raise ValueError(f"{self.name}: no built-in adapter placement for model type '{ctx.model_type}' "
                             f"(known: {', '.join(sorted(PATTERNS))}); set options.attn_modules and options.ffn_modules")
        wanted = [re.compile(ffn)] + ([re.compile(attn)] if self.variant == "houlsby" and attn else [])
        targets = [(n, m) for n, m in model.named_modules()
                   if any(w.search(n) for w in wanted) and not in_head(n, ctx.head_modules)]
        if not targets:
            raise ValueError(f"{self.name}: no module matched {[w.pattern for w in wanted]} in {ctx.model_type}")
        for name, module in targets:
            hidden = _out_features(module)
            ref = next(module.parameters())
            module.add_module("adapter", BottleneckAdapter(hidden, max(1, hidden // o.reduction_factor),
                                                           o.activation).to(ref.dtype))
            module.register_forward_hook(_add_adapter)
        freeze_all_but(model, lambda n: ".adapter." in n or in_head(n, ctx.head_modules))
        norms = 0
        for n, m in model.named_modules():
            if o.train_layer_norms and "norm" in type(m).__name__.lower():
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
                    norms += 1
        ctx.notes.update(variant=self.variant, reduction_factor=o.reduction_factor, activation=o.activation,
                         adapters=len(targets), adapter_modules=[n for n, _ in targets],
                         train_layer_norms=o.train_layer_norms, norm_tensors=norms, trained=sorted(ctx.head_modules))
        return model

    merge_note = "non-linear adapters: they cannot be merged into the base weights"

    def merge(self, model):
        raise ValueError("bottleneck adapters are non-linear and cannot be merged into the base weights; "
                         "unset train.export_merged")


class Houlsby(Bottleneck):
    name = "houlsby"


class Pfeiffer(Bottleneck):
    name = "pfeiffer"
    variant = "pfeiffer"
