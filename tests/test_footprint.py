"""plan --target: peak GPU memory on a machine you do not have. Weights, gradients and optimizer state are
counted from the shapes (checked against the built model); activations are measured on 1- and 2-block copies
and scaled, checked against the same measurement on the whole model at the run's batch; the cheapest change."""
import json

import pytest
import torch

from peftbench import footprint as fp
from peftbench.cli import main
from peftbench.config import QuantizationSpec, expand, load_grid
from peftbench.measure import count_parameters


def _run(model="tiny:bert", method="lora", **train):
    return expand(load_grid(data={"models": [model], "methods": [method], "seeds": [1],
                                  "tasks": [{"name": "t", "data": {"source": "x.jsonl"}, "max_length": 48}],
                                  "train": {"batch_size": 8, **train}}))[0]


def test_targets_are_gpu_names_or_sizes_and_anything_else_is_one_line():
    assert fp.parse_target("a100-80gb") == fp.Target("A100-80GB", 80)
    assert fp.parse_target("24GB").gib == 24 and fp.parse_target("16 GiB").gib == 16
    assert fp.parse_target("H100").budget_mb == pytest.approx(0.9 * 80 * 1024)
    with pytest.raises(ValueError, match="--target 'A99' is neither a known GPU .* nor a size such as 24GB"):
        fp.parse_target("A99")


@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning"])
def test_weights_gradients_and_optimizer_state_are_the_shapes_priced_by_dtype(method):
    run = _run(method=method)
    meta, *_ = fp.build(run)
    real, *_ = fp.build(run, device="cpu")
    counts = count_parameters(real)
    state = fp.state_bytes(run, meta)
    assert (state["trainable"], state["total"]) == (counts["trainable"], sum(p.numel() for p in real.parameters()))
    assert state["weights"] == 4 * state["total"] and state["gradients"] == 4 * state["trainable"]
    assert state["optimizer"] == 8 * state["trainable"]  # AdamW: two fp32 moments
    assert fp.state_bytes(run, meta, optimizer="adamw_8bit")["optimizer"] == 2 * state["trainable"]
    if method != "full":
        four = fp.state_bytes(run, meta, quantization=QuantizationSpec(bits=4))["weights"]
        linear = sum(m.weight.numel() for n, m in real.named_modules() if isinstance(m, torch.nn.Linear)
                     and not m.weight.requires_grad and "classifier" not in n)
        assert four == pytest.approx(state["weights"] - linear * (4 - fp.QUANT_BYTES[4]))


@pytest.mark.parametrize("model,method,precision,checkpointing", [("tiny:bert", "lora", "fp32", False),
                                                                  ("tiny:llama", "full", "bf16", False),
                                                                  ("tiny:bert", "full", "fp32", True)])
def test_activations_scaled_from_two_small_copies_equal_the_whole_model_measured(model, method, precision,
                                                                                 checkpointing):
    run = _run(model, method, precision=precision, gradient_checkpointing=checkpointing)
    profile = fp.activation_profile(run)
    _, _, config, kind = fp.build(run)
    predicted = fp.activations(profile, precision, checkpointing, fp.depth(config), 8, 48)
    torch.manual_seed(0)
    whole, *_ = fp.build(run, device="cpu")
    fp._checkpointing(whole, checkpointing)
    measured = fp.saved_bytes(whole, fp._inputs(kind, config, 8, 48), precision)
    assert predicted["saved"] == pytest.approx(measured, rel=0.01)
    assert predicted["transient"] > 0


def test_the_cheapest_change_is_found_and_named_where_a_run_does_not_fit(tmp_path, capsys):
    run = _run(method="full")
    meta, _, config, _ = fp.build(run)
    state = fp.state_bytes(run, meta)
    state["optimizer_8bit"] = fp.state_bytes(run, meta, optimizer="adamw_8bit")["optimizer"]
    state["weights_4bit"] = state["weights"]
    profile = fp.activation_profile(run)
    layers = fp.depth(config)
    plain = fp.predict(run, state, profile, layers)
    bf16 = fp.predict(run, state, profile, layers, {"precision": "bf16"})
    assert bf16["activations"] < plain["activations"] and bf16["weights"] == plain["weights"]
    between = fp.Target("between", (plain["total"] + bf16["total"]) / 2 / 1024 / fp.BUDGET)
    change, after = fp.cheapest_fit(run, state, profile, layers, between)
    assert change == "train.precision=bf16" and after["total"] == pytest.approx(bf16["total"])
    assert fp.cheapest_fit(run, state, profile, layers, fp.Target("nothing", 1e-6))[0] is None
    halved = fp.predict(run, state, profile, layers, {"precision": "bf16", "optimizer": "adamw_8bit",
                                                      "gradient_checkpointing": True, "batch_size": 4})
    assert halved["activations"] < fp.predict(run, state, profile, layers, {"precision": "bf16", "optimizer": "adamw_8bit",
                                                                            "gradient_checkpointing": True})["activations"]

    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"models": ["tiny:bert"], "methods": ["lora"], "seeds": [1],
                                "tasks": [{"name": "t", "data": {"source": "recipe:demo_sentiment"}}]}))
    assert main(["plan", str(grid), "--target", "T4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    [row] = result["rows"]
    assert result["target"] == "T4" and row["fits"] and row["predicted_mb"]["total"] < 100
    assert main(["plan", str(grid), "--target", "A99"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--target 'A99' is neither a known GPU" in err[0]
