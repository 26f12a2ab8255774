"""Inference cost (train.inference_cost, run/inference.py): the saved size, forward latency and throughput at
batch 1 and the evaluation batch, merged against unmerged side by side where the method merges."""
import pytest
import torch

from conftest import toy_grid
from peftbench.config import expand, load_grid
from peftbench.run.batching import eval_loader, to_device
from peftbench.report import render
from peftbench.run.recipe import execute, setup
from peftbench.runner import run_grid
from peftbench.store import Store


def test_every_run_records_its_inference_cost_and_the_merged_speed_where_the_method_merges(toy, tmp_path):
    out = tmp_path / "out"
    grid = load_grid(data=toy_grid(toy, out, models=["tiny:bert"],
                                   methods=["full", "lora", "ia3", "prompt_tuning", "houlsby"], epochs=1, threads=1))
    run_grid(grid, in_process=True, show_progress=False)
    results = {r.method: r for r in Store(out).results()}
    for run in expand(grid):
        result = results[run.method.label]
        inf = result.inference
        saved = sum(f.stat().st_size for f in (out / "runs" / run.slug / "weights").rglob("*") if f.is_file()) / 2**20
        assert inf.saved_mb == pytest.approx(saved, abs=1e-3) and inf.saved_mb > 0
        n_test = result.test.samples
        one, batch = inf.unmerged.batch1, inf.unmerged.eval_batch
        rounds = 2 if inf.merged is not None else 1  # unmerged, merged, unmerged, merged
        assert (one.batch_size, one.batches, one.rows) == (1, rounds * min(32, n_test), rounds * min(32, n_test))
        assert batch.batch_size == 32 and batch.rows == rounds * min(4 * 32, n_test)
        assert 0 < one.latency_ms_median <= one.latency_ms_max and one.rows_per_second > 0
        if run.method.name in ("lora", "ia3"):
            assert inf.merged is not None and inf.merge is None
            assert inf.merged_speedup_batch1 == pytest.approx(
                one.latency_ms_median / inf.merged.batch1.latency_ms_median, rel=1e-2)
        else:
            assert inf.merged is None and inf.merged_speedup_batch1 is None
            assert {"full": "nothing to merge", "prompt_tuning": "virtual tokens",
                    "houlsby": "non-linear"}[run.method.name] in inf.merge
    render(out, echo=lambda *a: None)
    text = (out / "report.md").read_text(encoding="utf-8")
    table = text.split("Inference cost")[1].split("\n\n")[1]
    lora = next(line for line in table.splitlines() if line.startswith("| lora "))
    assert f"{results['lora'].inference.merged_speedup_batch1:.2f}×" in lora
    assert f"{results['lora'].inference.saved_mb:.2f}" in lora
    assert "virtual tokens" in next(line for line in table.splitlines() if line.startswith("| prompt_tuning "))
    assert (out / "report" / "inference__bert__toy.csv").exists()
    off = expand(load_grid(data=toy_grid(toy, tmp_path / "off", models=["tiny:bert"], methods=["lora"], epochs=1,
                                         threads=1, inference_cost=False)))[0]
    assert execute(off, tmp_path / "off-run", show_progress=False).inference is None
    assert off.run_id == expand(grid)[1].run_id  # a measurement, not part of what the run computes


@pytest.mark.parametrize("method", ["lora", "dora", "adalora", "loha", "ia3", "vera"])
def test_the_merged_view_computes_what_the_adapter_computes_and_is_undone_on_exit(toy, tmp_path, method):
    """With non-zero adapter weights: logits inside the view equal the unmerged ones (the fold is right), and
    after it the model computes exactly as before (unmerged again, the base weights restored bit for bit)."""
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=[method], threads=1)))[0]
    s = setup(run, show=False)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in s.model.named_parameters():
            if p.requires_grad and "classifier" not in name:
                p.add_(0.05 * torch.randn_like(p))
    s.model.eval()
    batch = to_device(next(iter(eval_loader(s.prep, run.train, run.max_length(), "test"))), s.device)
    forward = lambda: s.task.forward(s.adapter, batch, s.prep).logits.float()  # noqa: E731
    view = s.method.merged_view(s.model)
    assert view is not None
    with torch.no_grad():
        before = forward()
        with view():
            merged = forward()
        after = forward()
    assert torch.allclose(merged, before, atol=1e-4), (merged - before).abs().max()
    assert torch.equal(after, before)  # the base weights put back bit for bit
    assert before.abs().sum() > 0 and not torch.allclose(before[0], before[-1])  # (a real forward)
