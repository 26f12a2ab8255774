"""The CUDA paths, where a GPU is present (skipped elsewhere, CI included): peak memory from CUDA's allocator
counters (allocated below reserved, full fine-tuning above LoRA), bf16 and fp16 autocast training to finite
losses, the GPU recorded in provenance, TF32, 8-bit AdamW where bitsandbytes is installed, and the report
reading GPU memory for PES."""
import math

import pytest
import torch

from conftest import toy_grid
from peftbench.config import load_grid
from peftbench.report import render
from peftbench.runner import run_grid
from peftbench.store import Store

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU paths are checked "
                                                                      "where one is (tests/test_gpu.py)")


def _run(toy, out, **train):
    data = toy_grid(toy, out, models=["tiny:llama", "tiny:bert"], methods=["full", "lora"], epochs=2, **train)
    # each run in its own process, as a grid runs them: the baselines hold no other run's cached blocks
    summary = run_grid(load_grid(data=data), in_process=False, show_progress=False)
    assert summary.failed == []
    store = Store(out)
    try:
        return store.results()
    finally:
        store.close()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_runs_measure_gpu_memory_and_train_in_each_precision(toy, tmp_path, precision):
    results = _run(toy, tmp_path / "out", precision=precision)
    for r in results:
        m, hw = r.memory, r.provenance["hardware"]
        assert m.peak_memory_kind == "cuda_allocated" and hw["device"].startswith("cuda"), (m, hw)
        assert 0 < m.cuda_peak_allocated_mb <= m.cuda_peak_reserved_mb, m
        assert m.peak_memory_mb == m.cuda_peak_allocated_mb
        assert hw.get("gpu") and hw.get("gpu_memory_gb", 0) > 1 and hw.get("cuda")
        losses = [c["train_loss"] for c in r.curves if c.get("train_loss") is not None]
        assert losses and all(math.isfinite(x) for x in losses), (precision, r.slug, losses)
        if r.method == "full":
            assert r.test.metrics["accuracy"] > 0.6  # the toy set is learnable
    by = {(r.model, r.method): r.memory.cuda_peak_allocated_mb for r in results}
    for model in ("llama", "bert"):
        assert by[(model, "full")] > by[(model, "lora")]  # gradients and Adam state for every weight
    md, _ = render(tmp_path / "out", echo=lambda *a: None, resamples=50)
    text = md.read_text()
    assert "Peak GPU mem (MB)" in text and "V (GB, GPU peak allocated)" in text


def test_tf32_and_8bit_adamw_on_cuda(toy, tmp_path):
    results = _run(toy, tmp_path / "tf32", tf32=True)
    assert all(r.memory.peak_memory_kind == "cuda_allocated" for r in results)
    pytest.importorskip("bitsandbytes")
    results = _run(toy, tmp_path / "adam8", optimizer="adamw_8bit")
    assert all(math.isfinite(r.test.loss) for r in results)


def test_qlora_loads_a_4bit_base_and_trains_its_adapter(toy, tmp_path):
    """models[].quantization: a tiny Llama saved as a checkpoint, loaded in 4-bit NF4 by bitsandbytes, LoRA
    trained on it: finite losses, the quantisation recorded, the report labelling it beside the bf16 LoRA."""
    pytest.importorskip("bitsandbytes")
    from peftbench.families import Head, HeadKind
    from peftbench.models import load_model

    model, tok, _ = load_model(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:llama"], methods=["lora"])).models[0],
                               Head(HeadKind.SEQUENCE, ("a", "b")))
    folder = tmp_path / "llama"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "out"
    data = toy_grid(toy, out, models=[{"source": str(folder), "name": "llama", "dtype": "bfloat16"},
                                      {"source": str(folder), "name": "llama-4bit", "dtype": "bfloat16",
                                       "quantization": {"bits": 4}}], methods=["lora"], epochs=2, precision="bf16")
    assert run_grid(load_grid(data=data), in_process=False, show_progress=False).failed == []
    store = Store(out)
    results = {r.model: r for r in store.results()}
    store.close()
    q = results["llama-4bit"]
    assert q.model_info["quantization"]["bits"] == 4 and q.model_info["quantization"]["quant_type"] == "nf4"
    assert all(math.isfinite(c["train_loss"]) for c in q.curves)
    md, _ = render(out, echo=lambda *a: None, resamples=50)
    assert "lora (4-bit nf4)" in md.read_text()
