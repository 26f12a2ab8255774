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
