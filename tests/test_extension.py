"""The three extension points, used from outside the project: a task type, a method and a model family
(architecture) are each one class plus one registration call; they validate, run through run_grid and
reach the store and the report without any other project file changing."""
import pytest
import torch

from conftest import toy_grid
from toy_plugin import HeadAndNorms, KeywordTask
from peftbench import registry
from peftbench.config import ConfigError, load_grid
from peftbench.families import ENCODER, Architecture, Family, Head, HeadKind
from peftbench.report import render
from peftbench.runner import run_grid
from peftbench.store import Store


TOY_ENCODER = Architecture(name="toy-encoder", family=Family.ENCODER, matches=lambda c: c.model_type == "bert",
                           heads=ENCODER.heads, padding_side="left")


@pytest.fixture
def registered():
    registry.register("task", "keyword", KeywordTask)
    registry.register("method", "head_and_norms", HeadAndNorms)
    registry.register("architecture", "toy-encoder", TOY_ENCODER, first=True)
    yield
    registry.unregister("task", "keyword")
    registry.unregister("method", "head_and_norms")
    registry.unregister("architecture", "toy-encoder")


def test_a_task_a_method_and_a_family_registered_from_outside_run_through_the_grid(registered, toy, tmp_path):
    data = toy_grid(toy, tmp_path / "out", models=["tiny:bert"],
                    methods=[{"name": "head_and_norms", "label": "head", "norms": False}, "head_and_norms"], epochs=2)
    data["tasks"] = [{"name": "kw", "type": "keyword", "data": {"source": str(toy), "options": {"keyword": "great"}}}]
    grid = load_grid(data=data)
    assert grid.methods[0].options == {"norms": False} and grid.tasks[0].data.options == {"keyword": "great"}
    data["methods"][0] = {"name": "head_and_norms", "label": "x", "nroms": False}
    with pytest.raises(ConfigError, match=r"methods\[0\].options.nroms: unknown option of method 'head_and_norms'; "
                                          "allowed: norms"):
        load_grid(data=data)
    summary = run_grid(grid, in_process=True, show_progress=False)
    assert summary.failed == [] and len(summary.finished) == 2
    store = Store(tmp_path / "out")
    results = {r.method: r for r in store.results()}
    store.close()
    for r in results.values():
        assert r.task_type == "keyword" and r.model_info["architecture"] == "toy-encoder"
        assert r.model_info["padding_side"] == "left" and 0 <= r.test.metrics["accuracy"] <= 1
    assert results["head_and_norms"].parameters.trainable > results["head"].parameters.trainable
    assert results["head"].method_notes == {"norms": False}
    md, _ = render(tmp_path / "out", echo=lambda *a: None)
    assert "head_and_norms" in md.read_text()


def test_unregistered_names_fail_validation_with_the_allowed_names(toy, tmp_path):
    data = toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["head_and_norms"])
    with pytest.raises(ConfigError, match="'head_and_norms' is not a known method; allowed: full, lora"):
        load_grid(data=data)


def test_validation_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from peftbench.config import load_grid; "
            "load_grid(data={'models': ['tiny:bert'], 'methods': ['lora', 'houlsby', 'adalora', 'prompt_tuning', 'vera'], "
            "'tasks': [{'name': t, 'type': t, 'data': {'source': 'x'}} for t in ('classification', 'multi_label', "
            "'token_classification', 'question_answering', 'seq2seq', 'multiple_choice')]}); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_model_adapter_aligns_prompt_method_outputs_to_the_input():
    """Prompt tuning prepends virtual tokens; token-level outputs come back at the input's width."""
    from peftbench.config import ModelSpec
    from peftbench.methods.adapter import ModelAdapter
    from peftbench.methods.base import MethodContext
    from peftbench.methods.prompt import PromptTuning
    from peftbench.models import load_model

    model, tok, info = load_model(ModelSpec(source="tiny:bert"), Head(HeadKind.TOKEN, labels=("O", "B-X")))
    ctx = MethodContext(info["family"], info["model_type"], ["classifier"], "TOKEN_CLS", total_steps=10)
    model = PromptTuning().apply(model, PromptTuning.Options(num_virtual_tokens=5), ctx).eval()
    batch = tok(["a good day", "an awful long trip"], return_tensors="pt", padding=True)
    with torch.no_grad():
        raw = model(**batch).logits
        aligned = ModelAdapter(model, PromptTuning())(dict(batch)).logits
    assert raw.shape[1] == batch["input_ids"].shape[1] + 5 and aligned.shape[1] == batch["input_ids"].shape[1]
    torch.testing.assert_close(aligned, raw[:, 5:])


class NanTask(KeywordTask):
    def compute_metrics(self, prep, predictions, references, calibration=None):
        return {"accuracy": float("nan")}


def test_a_validation_metric_nan_in_every_epoch_fails_the_run_with_the_reason(toy, tmp_path):
    registry.register("task", "nan_task", NanTask)
    try:
        data = toy_grid(toy, tmp_path / "out", models=["tiny:bert"], methods=["head_only"], epochs=2)
        data["tasks"] = [{"name": "nan", "type": "nan_task", "data": {"source": str(toy)}}]
        summary = run_grid(load_grid(data=data), in_process=True, show_progress=False)
    finally:
        registry.unregister("task", "nan_task")
    assert summary.finished == [] and len(summary.failed) == 1
    assert "RunFailed: validation accuracy was not a number in any epoch (NaN)" in summary.failed[0][1]
