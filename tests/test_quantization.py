"""Quantised base models (models[].quantization, QLoRA through bitsandbytes): the config, the one-line refusals
(full fine-tuning on a quantised base, a machine without CUDA or bitsandbytes), the loading arguments, and the
report's label. The CUDA path itself is in tests/test_gpu.py."""
import importlib.util

import pytest
import torch

from peftbench.config import ConfigError, expand, load_grid
from peftbench.families import Head, HeadKind
from peftbench.models import quantization_kwargs
from peftbench.preflight import check
from peftbench.report.aggregate import build_cells

TASK = [{"name": "t", "data": {"source": "x.jsonl"}}]
QLORA = {"source": "org/llama", "name": "llama-4bit", "quantization": {"bits": 4}, "methods": ["lora"]}


def _grid(models, methods=("full", "lora")):
    return load_grid(data={"models": models, "methods": list(methods), "tasks": TASK, "seeds": [1]})


def test_a_quantised_base_runs_only_the_methods_it_names_and_full_fine_tuning_is_refused():
    grid = _grid([{"source": "org/llama", "name": "llama"}, QLORA])
    runs = expand(grid)
    assert [(r.model.name, r.method.name) for r in runs] == [("llama", "full"), ("llama", "lora"), ("llama-4bit", "lora")]
    q = runs[2].model.quantization
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "nf4", True, "bfloat16")  # QLoRA's
    assert runs[0].run_id == expand(_grid([{"source": "org/llama", "name": "llama"}]))[0].run_id  # ids kept
    for models, expected in (
            ([{**QLORA, "methods": None}], "models[0].quantization: full fine-tuning ('full') cannot train a 4-bit "
                                           "nf4 base"),
            ([{**QLORA, "methods": ["loraa"]}], "models[0].methods: ['loraa'] are not methods of this grid; allowed: "
                                                "full, lora"),
            ([{**QLORA, "quantization": {"bits": 3}}], "models[0].quantization.bits: 3 is not one of 4, 8"),
            ([{**QLORA, "quantization": {"quant_type": "int4"}}], "'int4' is not one of nf4, fp4"),
            ([{**QLORA, "source": "tiny:llama"}], "models[0].quantization: bitsandbytes quantises pretrained weights")):
        with pytest.raises(ConfigError) as info:
            _grid(models)
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_preflight_refuses_a_quantised_base_without_bitsandbytes_or_cuda_before_any_run(monkeypatch):
    grid = _grid([QLORA], methods=["lora"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    problems = [p for p in check(grid, read_data=False) if p.startswith("models[0].quantization")]
    assert problems == ["models[0].quantization: 4-bit nf4 loading needs bitsandbytes, which is not installed; "
                        "pip install bitsandbytes"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problems = [p for p in check(grid, read_data=False) if p.startswith("models[0].quantization")]
    assert len(problems) == 1 and "need a CUDA GPU and this machine has none" in problems[0]


def test_loading_arguments_are_qlora_s_and_keep_the_head_unquantised():
    spec = expand(_grid([QLORA], methods=["lora"]))[0].model
    kw = quantization_kwargs(spec, Head(HeadKind.SEQUENCE, ("a", "b")))
    c = kw["quantization_config"]
    assert c.load_in_4bit and not c.load_in_8bit and c.bnb_4bit_quant_type == "nf4" and c.bnb_4bit_use_double_quant
    assert c.bnb_4bit_compute_dtype == torch.bfloat16
    assert set(c.llm_int8_skip_modules) == {"classifier", "score", "classification_head", "lm_head"}
    assert quantization_kwargs(spec, Head(HeadKind.GENERATION))["quantization_config"].llm_int8_skip_modules is None
    eight = expand(_grid([{**QLORA, "quantization": {"bits": 8}}], methods=["lora"]))[0].model
    c8 = quantization_kwargs(eight, Head(HeadKind.SPAN))["quantization_config"]
    assert c8.load_in_8bit and not c8.load_in_4bit and c8.llm_int8_skip_modules == ["qa_outputs", "lm_head"]


def test_the_report_puts_qlora_beside_the_unquantised_runs_of_the_same_checkpoint_with_its_label():
    def result(model, method, quantization=None):
        info = {"resolved": "/models/llama", **({"quantization": quantization} if quantization else {})}
        return {"run_id": f"{model}-{method}", "model": model, "method": method, "method_name": method, "task": "t",
                "seed": 1, "model_info": info}

    groups = build_cells([result("llama", "full"), result("llama", "lora"),
                          result("llama-4bit", "lora", {"bits": 4, "quant_type": "nf4"})])
    assert list(groups) == [("llama", "t")]
    assert [c.label for c in groups[("llama", "t")]] == ["full", "lora", "lora (4-bit nf4)"]
    alone = build_cells([result("llama-8bit", "lora", {"bits": 8})])
    assert [c.label for c in alone[("llama-8bit", "t")]] == ["lora (8-bit)"]
