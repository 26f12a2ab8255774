"""Task heads transformers lacks.

``EncoderDecoderForSequenceClassification``: classification for a generic ``EncoderDecoderModel``
(e.g. bert2bert); ``EncoderDecoderForTokenClassification`` / ``...ForQuestionAnswering`` read its encoder. The encoder reads the text, the decoder gets the single start token and
cross-attends to it, and a linear head classifies the decoder's state at that position — the same
recipe as T5ForSequenceClassification's use of the decoder, with one decoder step.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import EncoderDecoderConfig, EncoderDecoderModel
from transformers.modeling_outputs import SequenceClassifierOutput


class _WrapsEncoderDecoder(nn.Module):
    """Loading for heads around a generic EncoderDecoderModel (``self.model``)."""

    @classmethod
    def from_pretrained(cls, where, config: EncoderDecoderConfig, revision=None, dtype=torch.float32):
        return cls(EncoderDecoderModel.from_pretrained(where, config=config, revision=revision, dtype=dtype)).to(dtype)

    @classmethod
    def from_config(cls, config: EncoderDecoderConfig, dtype=torch.float32):
        return cls(EncoderDecoderModel(config=config)).to(dtype)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    @property
    def device(self):
        return next(self.parameters()).device


class EncoderDecoderForSequenceClassification(_WrapsEncoderDecoder):
    def __init__(self, model: EncoderDecoderModel):
        super().__init__()
        self.model = model
        self.config = model.config
        dec = model.config.decoder
        self.dropout = nn.Dropout(getattr(dec, "hidden_dropout_prob", 0.1))
        self.classification_head = nn.Linear(dec.hidden_size, model.config.num_labels)
        nn.init.normal_(self.classification_head.weight, std=getattr(dec, "initializer_range", 0.02))
        nn.init.zeros_(self.classification_head.bias)

    def _start_id(self) -> int:
        cfg = self.config
        for v in (cfg.decoder_start_token_id, cfg.decoder.bos_token_id, getattr(cfg.decoder, "cls_token_id", None),
                  cfg.pad_token_id):
            if v is not None:
                return v
        raise ValueError("EncoderDecoderModel config has no decoder_start_token_id; set it in the checkpoint config")

    def forward(self, input_ids=None, attention_mask=None, labels=None, token_type_ids=None, **kwargs):
        start = torch.full((input_ids.shape[0], 1), self._start_id(), dtype=torch.long, device=input_ids.device)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start,
                         output_hidden_states=True, return_dict=True)
        state = out.decoder_hidden_states[-1][:, 0]
        logits = self.classification_head(self.dropout(state))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class _EncoderTokenHead(_WrapsEncoderDecoder):
    """Token-level heads for a generic EncoderDecoderModel: a linear layer on the encoder's states (the
    decoder is unused, as in T5ForTokenClassification / T5ForQuestionAnswering's encoder-side reading)."""

    head_name = "classifier"

    def __init__(self, model: EncoderDecoderModel, out_features: int):
        super().__init__()
        self.model = model
        self.config = model.config
        enc = model.config.encoder
        self.dropout = nn.Dropout(getattr(enc, "hidden_dropout_prob", 0.1))
        head = nn.Linear(enc.hidden_size, out_features)
        nn.init.normal_(head.weight, std=getattr(enc, "initializer_range", 0.02))
        nn.init.zeros_(head.bias)
        setattr(self, self.head_name, head)

    def states(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        out = self.model.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds)
        return self.dropout(out.last_hidden_state)


class EncoderDecoderForTokenClassification(_EncoderTokenHead):
    def __init__(self, model):
        super().__init__(model, model.config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None, token_type_ids=None, **kw):
        from transformers.modeling_outputs import TokenClassifierOutput

        logits = self.classifier(self.states(input_ids, attention_mask, inputs_embeds))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)


class EncoderDecoderForQuestionAnswering(_EncoderTokenHead):
    head_name = "qa_outputs"

    def __init__(self, model):
        super().__init__(model, 2)

    def forward(self, input_ids=None, attention_mask=None, start_positions=None, end_positions=None,
                inputs_embeds=None, token_type_ids=None, **kw):
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        start, end = self.qa_outputs(self.states(input_ids, attention_mask, inputs_embeds)).float().unbind(-1)
        loss = None
        if start_positions is not None:
            loss = (nn.functional.cross_entropy(start, start_positions) + nn.functional.cross_entropy(end, end_positions)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end)


class MeanPooledForSequenceClassification(nn.Module):
    """Sequence classification on the mean of the model's last hidden states over the tokens the attention mask
    keeps (``tasks[].head: {pooling: mean}``): how e5 and sentence-transformers encoders were pretrained to
    represent a text, where transformers' own head reads the first token through a pooler such checkpoints do not
    have (a random one is created). Dropout, then a linear layer, ``classifier`` (trained and saved by every
    method, as the Auto heads'). The body is ``AutoModel``'s, its pooler dropped (unused, it would count as
    parameters and hold no gradient)."""

    def __init__(self, model: nn.Module, config):
        super().__init__()
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # BERT-like models skip a None pooler
        self.model = model
        self.config = config
        self.dropout = nn.Dropout(getattr(config, "classifier_dropout", None) or getattr(config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    @classmethod
    def from_pretrained(cls, where, config, revision=None, dtype=torch.float32, output_loading_info=False, **kwargs):
        from transformers import AutoModel

        base, loading = AutoModel.from_pretrained(where, config=config, revision=revision, dtype=dtype,
                                                  output_loading_info=True, **kwargs)
        model = cls(base, base.config).to(dtype)
        return (model, loading) if output_loading_info else model

    @classmethod
    def from_config(cls, config, dtype=torch.float32):
        from transformers import AutoModel

        return cls(AutoModel.from_config(config, dtype=dtype), config).to(dtype)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    @property
    def device(self):
        return next(self.parameters()).device

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None, token_type_ids=None,
                **kwargs):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                         return_dict=True, **extra)
        states = out.last_hidden_state
        mask = (attention_mask if attention_mask is not None else torch.ones(states.shape[:2], device=states.device))
        mask = mask.to(states.dtype).unsqueeze(-1)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
