"""Tiny in-process models (a few thousand parameters) for fast tests: no files, no network.

Each family returns ``(config, tokenizer)``; the weights are initialised from a fixed seed so that
every method in a grid starts from the same "pretrained" model.  The tokenizer is byte-level (256
byte symbols plus specials), so it handles any script, Persian included.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import BertConfig, EncoderDecoderConfig, GPT2Config, LlamaConfig, PreTrainedTokenizerFast, T5Config

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 32, 2, 2, 64, 512
INIT_RANGE = 0.2  # wider than the usual 0.02: a random 32-wide model then has features a head can use


def byte_tokenizer(template: str) -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    ids = {t: vocab[t] for t in SPECIALS}
    if template == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    elif template == "t5":
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", ids["</s>"])])
    else:  # decoders: bos first, like Llama
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A </s> $B:1", special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])])
    kw = dict(unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    if template == "bert":
        kw.update(pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    elif template == "t5":
        kw.update(pad_token="[PAD]")
    # decoders get no pad token on purpose: the model loader must give them one, as for real GPT-2/Llama
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=POSITIONS, **kw)


def _ids(tok):
    return dict(pad_token_id=tok.convert_tokens_to_ids("[PAD]"), bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id)


def bert():
    tok = byte_tokenizer("bert")
    return BertConfig(vocab_size=len(tok), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=FFN, max_position_embeddings=POSITIONS, pad_token_id=tok.pad_token_id,
                      initializer_range=INIT_RANGE), tok


def t5():
    tok = byte_tokenizer("t5")
    ids = _ids(tok)
    return T5Config(vocab_size=len(tok), d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=FFN, num_layers=LAYERS,
                    num_decoder_layers=LAYERS, num_heads=HEADS, pad_token_id=ids["pad_token_id"],
                    eos_token_id=ids["eos_token_id"], decoder_start_token_id=ids["pad_token_id"]), tok


def gpt2():
    tok = byte_tokenizer("decoder")
    return GPT2Config(vocab_size=len(tok), n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=FFN,
                      n_positions=POSITIONS, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id), tok


def llama():
    tok = byte_tokenizer("decoder")
    return LlamaConfig(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, num_key_value_heads=1, max_position_embeddings=POSITIONS,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id), tok


def bert2bert():
    """A generic EncoderDecoderModel (BERT encoder, BERT decoder with cross-attention), like me5-bert2bert."""
    enc, tok = bert()
    dec, _ = bert()
    dec.is_decoder, dec.add_cross_attention = True, True
    cfg = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id = tok.cls_token_id, tok.pad_token_id
    return cfg, tok
