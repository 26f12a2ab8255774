"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), written for transformers 5.

An adapter is ``h -> h + W_up(act(W_down h))`` with a hidden size of ``hidden / reduction_factor``,
placed on the output projection of a sub-layer (before its residual connection and layer norm, as in
Houlsby): after attention and after the feed-forward block (``houlsby``), or after the feed-forward block
only (``pfeiffer``).  ``W_up`` starts at zero, so the adapted model starts identical to the base model.
Adapters are child modules of the projection they follow (``...output.dense.adapter.down.weight``), so
base weight names are unchanged and the adapter weights are easy to find for later analysis.

Options (``method.options``): ``variant`` (houlsby | pfeiffer, default houlsby), ``reduction_factor``
(default 16), ``activation`` (relu | gelu | silu | tanh, default relu), ``train_layer_norms`` (default
false), ``attn_modules`` / ``ffn_modules`` (regular expressions over module names, for architectures
without a built-in pattern).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from .base import Method, freeze_all_but, in_head

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
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden: int, bottleneck: int, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # the adapted model starts as the base model
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(self.act(self.down(h)))


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
    default_lr = {"encoder": 5e-4, "encoder-decoder": 5e-4, "decoder": 3e-4}
    variant = "houlsby"

    def apply(self, model, spec, ctx):
        opts = dict(spec.options)
        variant = opts.pop("variant", self.variant)
        if variant not in ("houlsby", "pfeiffer"):
            raise ValueError(f"bottleneck: options.variant '{variant}' is not one of houlsby, pfeiffer")
        factor = int(opts.pop("reduction_factor", 16))
        activation = opts.pop("activation", "relu")
        if activation not in ACTIVATIONS:
            raise ValueError(f"bottleneck: options.activation '{activation}' is not one of {', '.join(ACTIVATIONS)}")
        train_ln = bool(opts.pop("train_layer_norms", False))
        default = PATTERNS.get(ctx.model_type)
        attn = opts.pop("attn_modules", default[0] if default else None)
        ffn = opts.pop("ffn_modules", default[1] if default else None)
        if opts:
            raise ValueError(f"bottleneck: unknown option(s) {sorted(opts)}; allowed: variant, reduction_factor, "
                             "activation, train_layer_norms, attn_modules, ffn_modules")
        if ffn is None:
            raise ValueError(f"bottleneck: no built-in adapter placement for model type '{ctx.model_type}' "
                             f"(known: {', '.join(sorted(PATTERNS))}); set options.attn_modules and options.ffn_modules")
        wanted = [re.compile(ffn)] + ([re.compile(attn)] if variant == "houlsby" and attn else [])
        targets = [(n, m) for n, m in model.named_modules()
                   if any(w.search(n) for w in wanted) and not in_head(n, ctx.head_modules)]
        if not targets:
            raise ValueError(f"bottleneck: no module matched {[w.pattern for w in wanted]} in {ctx.model_type}")
        for name, module in targets:
            hidden = _out_features(module)
            ref = next(module.parameters())
            module.add_module("adapter", BottleneckAdapter(hidden, max(1, hidden // factor), activation).to(ref.dtype))
            module.register_forward_hook(_add_adapter)
        freeze_all_but(model, lambda n: ".adapter." in n or in_head(n, ctx.head_modules))
        norms = 0
        for n, m in model.named_modules():
            if train_ln and "norm" in type(m).__name__.lower():
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
                    norms += 1
        ctx.notes.update(variant=variant, reduction_factor=factor, activation=activation, adapters=len(targets),
                         adapter_modules=[n for n, _ in targets], train_layer_norms=train_ln, norm_tensors=norms,
                         trained=sorted(ctx.head_modules))
        return model

    def merge(self, model):
        raise ValueError("bottleneck adapters are non-linear and cannot be merged into the base weights; "
                         "unset train.export_merged")


class Houlsby(Bottleneck):
    name = "houlsby"


class Pfeiffer(Bottleneck):
    name = "pfeiffer"
    variant = "pfeiffer"
