"""How tasks call a model that a method may have wrapped: the one place that knows methods change the
model's inputs and outputs.

* Prompt methods (prompt tuning, P-tuning) prepend virtual tokens: token-level outputs (logits, start /
  end scores) come back with the virtual positions first; the adapter cuts them to the input's width, so
  tasks index outputs by input position whatever the method.
* With a prompt method peft feeds ``inputs_embeds``; an encoder-decoder token-level head that derives its
  decoder inputs from ``input_ids`` (T5's QA head) gets them given explicitly.
* A decoder fed left-padded rows gets position ids counted from each row's first real token (what
  ``generate`` does), so a row's outputs do not depend on how much padding its batch needed (GPT-2-style
  absolute positions would shift otherwise).
* A method's extra training loss (AdaLoRA's orthogonal regulariser) is added by ``objective``: tasks compute
  the task loss, never the method's.
"""
from __future__ import annotations

TOKEN_OUTPUTS = ("logits", "start_logits", "end_logits")


def is_prompt_learning(model) -> bool:
    """A peft prompt method (prompt / prefix / P-tuning) is active."""
    cfg = getattr(model, "active_peft_config", None)
    return bool(getattr(cfg, "is_prompt_learning", False))


def _reads_decoder(model) -> bool:
    import inspect

    return getattr(model.config, "is_encoder_decoder", False) and \
        "decoder_input_ids" in inspect.signature(model.forward).parameters


def base_model(model):
    """The transformers model under a peft wrapper (the model itself where a method added none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _takes_positions(model) -> bool:
    """A model without an encoder-decoder split whose forward takes ``position_ids`` (only decoders are padded on
    the left, which is what triggers the correction)."""
    import inspect

    base = base_model(model)
    if getattr(base.config, "is_encoder_decoder", False):
        return False
    return "position_ids" in inspect.signature(base.forward).parameters


class ModelAdapter:
    def __init__(self, model, method, call=None):
        """``call``: what the forward pass goes through, where it is not ``model`` itself (DDP's wrapper: it
        all-reduces the gradients); everything else is read from ``model``."""
        self.model = model
        self.call = call if call is not None else model
        self.method = method
        self.prompt = is_prompt_learning(model)
        self.positions = not self.prompt and _takes_positions(model)

    def __call__(self, inputs: dict, width: int | None = None, decoder_input_ids=None):
        """Outputs with token-level tensors aligned to the last ``width`` positions (default: the input's)."""
        inputs = dict(inputs)
        if decoder_input_ids is not None:
            inputs["decoder_input_ids"] = decoder_input_ids
        elif self.prompt and "input_ids" in inputs:
            base = self.model.get_base_model()
            if _reads_decoder(base) and hasattr(base, "_shift_right"):
                inputs["decoder_input_ids"] = base._shift_right(inputs["input_ids"])
        mask = inputs.get("attention_mask")
        if self.positions and mask is not None and mask.dim() == 2 and "position_ids" not in inputs \
                and bool((mask[:, 0] == 0).any()):  # left-padded rows: each row's positions start at 0
            inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.call(**inputs)
        width = width or (inputs["input_ids"].shape[1] if "input_ids" in inputs else None)
        if self.prompt and width:
            for key in TOKEN_OUTPUTS:
                value = getattr(out, key, None)
                if value is not None and value.dim() >= 2 and value.shape[1] > width:
                    out[key] = value[:, -width:]
        return out

    def decoder_inputs(self, labels):
        """Decoder inputs for an encoder-decoder trained on ``labels`` (the labels shifted right)."""
        return self.model.prepare_decoder_input_ids_from_labels(labels=labels)

    def generate(self, **kw):
        return self.model.generate(**kw)

    def objective(self, task_loss):
        """The training objective: the task loss plus the method's regulariser."""
        return task_loss + self.method.regulariser(self.model)
