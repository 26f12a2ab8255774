"""Speed on one machine: the features cache (a second run tokenises nothing), dynamic vs fixed padding,
length-grouped batches, options recorded in provenance."""
import json

import pytest
import torch

from conftest import toy_grid
from peftbench.config import load_grid
from peftbench.runner import run_grid
from peftbench.store import Store


@pytest.fixture
def tokenizer_calls(monkeypatch):
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    calls = {"n": 0}
    real = PreTrainedTokenizerBase.__call__

    def counting(self, *a, **kw):
        calls["n"] += 1
        return real(self, *a, **kw)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counting)
    return calls


def _one(toy, out, method="lora", **train):
    run_grid(load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=[method], epochs=1, threads=1, **train)),
             in_process=True, show_progress=False)
    [res] = Store(out).results()
    return res


def test_a_second_run_over_the_same_data_does_no_tokenisation(toy, tmp_path, monkeypatch, tokenizer_calls):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    first = _one(toy, tmp_path / "a", "lora")
    assert tokenizer_calls["n"] > 0 and first.data["features_cache"]["hit"] is False
    assert first.data["features_cache"]["computed"] == 3  # train, validation, test
    tokenizer_calls["n"] = 0
    second = _one(toy, tmp_path / "b", "full")  # another grid, another method: the same features
    assert tokenizer_calls["n"] == 0
    assert second.data["features_cache"] == {**first.data["features_cache"], "hit": True, "loaded": 3,
                                                "computed": 0}
    uncached = _one(toy, tmp_path / "c", "full", cache_features=False)
    assert tokenizer_calls["n"] > 0 and uncached.data["features_cache"] is None
    assert uncached.test.metrics == second.test.metrics  # the cache changes nothing but the time
    assert uncached.run_id == second.run_id  # nor the run's identity
    tokenizer_calls["n"] = 0
    other = _one(toy, tmp_path / "d", "full", max_length=16)  # another max_length: another key
    assert tokenizer_calls["n"] > 0 and other.data["features_cache"]["key"] != first.data["features_cache"]["key"]


def test_fixed_padding_pads_every_batch_to_max_length_on_the_rows_side():
    from peftbench.run.batching import FixedPadding

    def collate(features):
        return {"input_ids": torch.tensor([[5, 6, 7], [5, 6, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
                "labels": torch.tensor([1, 0]), "_meta": ["a", "b"]}

    right = FixedPadding(collate, 6, pad_id=0, side="right")([])
    assert right["input_ids"].tolist() == [[5, 6, 7, 0, 0, 0], [5, 6, 0, 0, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert right["labels"].tolist() == [1, 0] and right["_meta"] == ["a", "b"]  # not input-aligned: untouched
    left = FixedPadding(collate, 5, pad_id=9, side="left")([])
    assert left["input_ids"].tolist() == [[9, 9, 5, 6, 7], [9, 9, 5, 6, 0]]

    def token_level(features):
        return {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.tensor([[1, 1]]),
                "labels": torch.tensor([[2, -100]])}

    assert FixedPadding(token_level, 4, 0, "right")([])["labels"].tolist() == [[2, -100, -100, -100]]


@pytest.mark.parametrize("family", ["tiny:bert", "tiny:gpt2", "tiny:t5"])
def test_fixed_padding_gives_the_outputs_of_dynamic_padding(toy, tmp_path, family):
    """The studies' fixed padding changes the cost, not the model's outputs: same logits as dynamic padding on
    every evaluation batch (encoders pad right, decoders left); and a run with it records the option."""
    from peftbench.config import expand
    from peftbench.run.batching import eval_loader
    from peftbench.run.recipe import setup, to_device

    grid = load_grid(data=toy_grid(toy, tmp_path / "r", models=[family], methods=["lora"], epochs=1, threads=1,
                                   max_length=32))
    run = expand(grid)[0]
    s = setup(run, show=False)
    s.model.eval()
    fixed_train = run.train.model_copy(update={"padding": "max_length"})
    with torch.inference_mode():
        for a, b in zip(eval_loader(s.prep, run.train, 32, "test"), eval_loader(s.prep, fixed_train, 32, "test")):
            assert b["input_ids"].shape[-1] == 32 and a["input_ids"].shape[-1] <= 32
            la = s.task.forward(s.adapter, to_device(a, s.device), s.prep).logits
            lb = s.task.forward(s.adapter, to_device(b, s.device), s.prep).logits
            torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-4)
    out = tmp_path / "fixed"
    res = _one(toy, out, "lora", padding="max_length", max_length=32)
    assert res.provenance["options"]["padding"] == "max_length"


def test_length_grouped_batches_cover_the_epoch_once_with_less_padding(toy, tmp_path):
    from peftbench.config import ModelSpec, TaskSpec, TrainSpec
    from peftbench.models import inspect_model
    from peftbench.run.batching import lengths, train_loader
    from peftbench.tasks.classification import Classification

    rows = [{"text": " ".join(["a"] * (1 + i % 25)), "label": "ab"[i % 2]} for i in range(300)]
    path = tmp_path / "lengths.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = Classification(TaskSpec(name="t", data={"source": str(path)}))
    _, tok, arch, _ = inspect_model(ModelSpec(source="tiny:bert"))
    prep = task.prepare(task.load(), tok, arch, 64)
    n = len(prep.features["train"])
    row_lengths = lengths(prep.features["train"])
    padded = {}
    for grouped in (False, True):
        train = TrainSpec(batch_size=16, group_by_length=grouped)
        loader = train_loader(prep, train, 64, list(range(n)), torch.Generator().manual_seed(0), row_lengths)
        widths, count = [], 0
        for batch in loader:
            widths.append(batch["input_ids"].numel())
            count += len(batch["input_ids"])
        assert count == n
        padded[grouped] = sum(widths)
    assert padded[True] < 0.8 * padded[False]


def test_memory_and_speed_options_train_and_are_recorded(toy, tmp_path):
    """Gradient checkpointing and length grouping train on CPU and are recorded; an 8-bit optimizer without
    bitsandbytes is one line before any run."""
    import importlib.util

    from peftbench.preflight import check

    res = _one(toy, tmp_path / "gc", "lora", gradient_checkpointing=True, group_by_length=True)
    options = res.provenance["options"]
    assert options["gradient_checkpointing"] is True and options["group_by_length"] is True
    assert res.training.optimizer_steps > 0 and res.test.loss == res.test.loss
    if importlib.util.find_spec("bitsandbytes") is None:
        grid = load_grid(data=toy_grid(toy, tmp_path / "o", models=["tiny:bert"], methods=["lora"], optimizer="adamw_8bit"))
        assert any(p.startswith("train.optimizer: adamw_8bit needs bitsandbytes") for p in check(grid))


def test_a_run_started_from_a_large_process_reports_its_own_peak_memory():
    """getrusage's ru_maxrss survives fork + exec (a child reports its parent's size); the meter reads VmHWM."""
    import subprocess
    import sys

    big = bytearray(600 * 2**20)
    for i in range(0, len(big), 4096):
        big[i] = 1
    code = "from peftbench.measure import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 500, child  # the child imports torch (a few hundred MB), never holds the parent's 600 MB more
    del big
