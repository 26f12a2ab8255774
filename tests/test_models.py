"""Model sources (GGUF with its fp32 cache, package folders, hub ids) and architecture families."""
import numpy as np
import pytest
import transformers


from conftest import seq_head, toy_grid
from peftbench.config import ModelSpec, expand, load_grid
from peftbench.families import Family
from peftbench.models import ModelLoadError, load_model

ENCODER, ENCODER_DECODER, DECODER = Family.ENCODER, Family.ENCODER_DECODER, Family.DECODER
from peftbench.tiny import SPECIALS
from peftbench.run.recipe import execute



def write_tiny_llama_gguf(path):
    """A real GGUF file (llama architecture, byte-level BPE vocabulary), written with the gguf package."""
    import gguf
    from tokenizers import pre_tokenizers

    toks = SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet())
    V, H, L, NH, KV, FF = len(toks), 32, 2, 2, 1, 64
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(512)
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(H // NH)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(toks)
    w.add_token_types([3] * len(SPECIALS) + [1] * (V - len(SPECIALS)))
    w.add_token_scores([0.0] * V)
    w.add_token_merges([])
    w.add_bos_token_id(SPECIALS.index("<s>"))
    w.add_eos_token_id(SPECIALS.index("</s>"))
    w.add_unk_token_id(SPECIALS.index("[UNK]"))
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (V, H), "output_norm.weight": (H,), "output.weight": (V, H)}
    for i in range(L):
        shapes.update({f"blk.{i}.attn_norm.weight": (H,), f"blk.{i}.attn_q.weight": (H, H),
                       f"blk.{i}.attn_k.weight": (H // NH * KV, H), f"blk.{i}.attn_v.weight": (H // NH * KV, H),
                       f"blk.{i}.attn_output.weight": (H, H), f"blk.{i}.ffn_norm.weight": (H,),
                       f"blk.{i}.ffn_gate.weight": (FF, H), f"blk.{i}.ffn_up.weight": (FF, H),
                       f"blk.{i}.ffn_down.weight": (H, FF)})
    for name, shape in shapes.items():
        w.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_source_trains_and_its_fp32_expansion_is_cached(tmp_path, monkeypatch, toy):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    gguf_path = write_tiny_llama_gguf(tmp_path / "tiny-llama.gguf")
    model, tok, info = load_model(ModelSpec(source=str(gguf_path)), seq_head(2))
    assert info["source_kind"] == "gguf" and info["family"] == DECODER and type(model).__name__ == "LlamaForSequenceClassification"
    assert tok.pad_token is not None and model.config.pad_token_id == tok.pad_token_id  # decoder got a pad token
    cached = list((tmp_path / "cache" / "gguf").glob("*/model.safetensors"))
    assert len(cached) == 1

    def no_conversion(*a, **k):
        raise AssertionError("the GGUF file was converted again instead of read from the cache")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_conversion)
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=[str(gguf_path)], methods=["lora"], epochs=2)))[0]
    assert run.model.name == "tiny-llama"
    result = execute(run, tmp_path / "run", show_progress=False)
    assert result.model_info["source_kind"] == "gguf" and result.parameters.trainable > 0


@pytest.mark.parametrize("source, family, cls", [
    ("tiny:bert", ENCODER, "BertForSequenceClassification"),
    ("tiny:t5", ENCODER_DECODER, "T5ForSequenceClassification"),
    ("tiny:bert2bert", ENCODER_DECODER, "EncoderDecoderForSequenceClassification"),
    ("tiny:gpt2", DECODER, "GPT2ForSequenceClassification"),
    ("tiny:llama", DECODER, "LlamaForSequenceClassification"),
])
def test_family_and_head_class(source, family, cls):
    model, tok, info = load_model(ModelSpec(source=source), seq_head(3))
    assert info["family"] == family and type(model).__name__ == cls
    assert model.config.num_labels == 3 and model.config.pad_token_id == tok.pad_token_id
    if family == DECODER:
        assert info.get("pad_token_added")  # GPT-2 / Llama tokenizers come without one


def test_bad_sources_fail_with_one_line(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    cases = [(str(tmp_path / "weights.bin"), "is a file but not a .gguf file"),
             (str(tmp_path / "missing.gguf"), "does not exist"),
             ("package:no_such_package_xyz/model", "is not installed"),
             ("tiny:bloom", "is not a known tiny")]
    for source, expected in cases:
        with pytest.raises(ModelLoadError) as info:
            load_model(ModelSpec(source=source), seq_head())
        assert expected in str(info.value) and "\n" not in str(info.value)


def test_weight_levels_tells_weights_expanded_from_4_bit_from_float_ones():
    """Layers set to gguf's own Q4_0 / Q4_1 round trip (scale, and scale with a minimum, as q4_K) are found; Q5_0,
    Q8_0 and float layers are not; the report's provenance names what it found."""
    import torch
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize

    from peftbench.models import weight_levels
    from peftbench.report.render import base_weights
    from peftbench.result import RunResult

    model = transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=256, num_hidden_layers=2,
                                                           num_attention_heads=4, intermediate_size=512))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert weight_levels(model) == {"block": 32, "levels": 16, "layers_checked": len(linears), "layers_4bit": 0,
                                    "dequantised": False}

    def round_trip(layer, kind):
        w = layer.weight.detach().numpy()
        layer.weight.data = torch.from_numpy(dequantize(quantize(w, kind), kind).reshape(w.shape).copy())

    for i, layer in enumerate(linears):
        round_trip(layer, Q.Q8_0 if i % 2 else Q.Q5_0)  # 8 and 5 bits: up to 32 distinct values in 32
    assert weight_levels(model)["layers_4bit"] == 0
    for i, layer in enumerate(linears):
        round_trip(layer, Q.Q4_0 if i % 2 else Q.Q4_1)
    found = weight_levels(model)
    assert found["layers_4bit"] == len(linears) and found["dequantised"]
    torch.nn.init.normal_(linears[0].weight, std=0.02)  # one layer in floating point again
    assert weight_levels(model)["layers_4bit"] == len(linears) - 1
    r = RunResult.load({"model_info": {"weight_levels": weight_levels(model)}})
    assert base_weights(r) == f"4-bit expanded to floats ({len(linears) - 1} of {len(linears)} layers checked)"
    assert base_weights(RunResult.load({"model_info": {"quantization": {"bits": 4, "quant_type": "nf4"}}})) == \
        "quantised on load (4-bit nf4)"
    assert base_weights(RunResult.load({})) == ""


def test_a_folder_without_tokenizer_files_is_refused_before_training(tmp_path):
    """Issue 35's worst silent failure: config.json + weights without the tokenizer files made transformers build an
    empty tokenizer, every word became [UNK] and the run trained at chance. Preflight names the folder, and loading
    refuses a tokenizer far smaller than the embedding."""
    import pytest

    from peftbench.config import ModelSpec
    from peftbench.models import ModelLoadError, load_config_and_tokenizer
    from peftbench.preflight import _model
    from peftbench.tiny import bert
    from transformers import BertModel

    config, tok = bert()
    folder = tmp_path / "weights-only"
    BertModel(config).save_pretrained(folder)
    problem = _model(0, ModelSpec(source=str(folder)))
    assert problem.startswith("models[0].source: model folder") and "has no tokenizer files" in problem
    tok.save_pretrained(folder)
    assert _model(0, ModelSpec(source=str(folder))) is None  # with its tokenizer: fine
    big = tmp_path / "mismatch"
    config.vocab_size = 5000
    BertModel(config).save_pretrained(big)
    tok.save_pretrained(big)
    with pytest.raises(ModelLoadError, match="has 263 tokens against the model's 5000 embedding rows"):
        load_config_and_tokenizer(ModelSpec(source=str(big)))
