"""Experiment trackers (train.trackers): what a run logs is read back from TensorBoard's event files and MLflow's
file store in the run folder; a tracker that is not installed, or named twice, is refused in one line."""
import json

import pytest

from conftest import toy_grid
from peftbench.config import ConfigError, expand, load_grid
from peftbench.preflight import check
from peftbench.runner import run_grid
from peftbench.store import Store


def _run(toy, tmp_path, trackers):
    out = tmp_path / "out"
    grid = load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=2, threads=1,
                                   log_every=2, trackers=trackers))
    run_grid(grid, in_process=True, show_progress=False)
    [result] = Store(out).results()
    return result, out / "runs" / result.slug


def test_tensorboard_holds_the_step_losses_epoch_validation_config_and_final_figures(toy, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, folder = _run(toy, tmp_path, ["tensorboard"])
    events = EventAccumulator(str(folder / "trackers" / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == list(range(2, result.training.optimizer_steps + 1, 2))  # every log_every optimizer steps
    epochs = events.Scalars("validation/accuracy")
    assert [e.value for e in epochs] == pytest.approx([c["val_metrics"]["accuracy"] for c in result.curves])
    assert [e.step for e in epochs] == [c["step"] for c in result.curves]
    assert events.Scalars("test/accuracy")[-1].value == pytest.approx(result.test.metrics["accuracy"])
    assert events.Scalars("parameters/trainable")[-1].value == result.parameters.trainable
    assert "inference/saved_mb" in scalars and "timing/train_seconds" in scalars
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.strip("`\n"))["method"]["name"] == "lora"
    assert result.provenance["trackers"]["tensorboard"] == str(folder / "trackers" / "tensorboard")


def test_mlflow_file_store_holds_the_config_as_params_and_the_metrics_with_their_steps(toy, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result, folder = _run(toy, tmp_path, ["mlflow"])
    uri = result.provenance["trackers"]["mlflow"]
    assert uri == (folder / "trackers" / "mlflow").resolve().as_uri()  # offline: files in the run folder
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("peftbench").experiment_id])
    assert run.info.run_name == result.slug and run.info.status == "FINISHED"
    assert run.data.params["method/name"] == "lora" and run.data.params["seed"] == "42"
    assert json.loads(run.data.params["train/trackers"]) == ["mlflow"]
    history = client.get_metric_history(run.info.run_id, "validation/accuracy")
    assert [m.value for m in history] == pytest.approx([c["val_metrics"]["accuracy"] for c in result.curves])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == \
        list(range(2, result.training.optimizer_steps + 1, 2))
    assert run.data.metrics["test/accuracy"] == pytest.approx(result.test.metrics["accuracy"])
    assert run.data.metrics["memory/peak_memory_mb"] == pytest.approx(result.memory.peak_memory_mb)


def test_trackio_and_wandb_stay_offline_in_the_run_folder(toy, tmp_path, monkeypatch):
    """Where installed (optional extras, not in the test extra): Trackio's database holds the logged steps and
    the config; W&B writes an offline run under the run folder."""
    pytest.importorskip("trackio")
    pytest.importorskip("wandb")
    import sqlite3

    for name in ("TRACKIO_DIR", "TRACKIO_SPACE_ID", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    grid = load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=2, threads=1,
                                   log_every=2, trackers=["trackio", "wandb"]))
    run_grid(grid, in_process=False, show_progress=False)  # (its own process: trackio reads TRACKIO_DIR on import)
    [result] = Store(out).results()
    folder = out / "runs" / result.slug / "trackers"
    db = sqlite3.connect(folder / "trackio" / "peftbench.db")
    rows = [(step, json.loads(metrics)) for step, metrics in db.execute("SELECT step, metrics FROM metrics")]
    assert [step for step, m in rows if "train/loss" in m] == list(range(2, result.training.optimizer_steps + 1, 2))
    accuracy = [m["validation/accuracy"] for _, m in rows if "validation/accuracy" in m]
    assert accuracy == pytest.approx([c["val_metrics"]["accuracy"] for c in result.curves])
    assert any(m.get("test/accuracy") == pytest.approx(result.test.metrics["accuracy"]) for _, m in rows)
    config = db.execute("SELECT config FROM configs").fetchone()[0]
    assert b'"lora"' in (config if isinstance(config, bytes) else config.encode())
    assert result.provenance["trackers"]["wandb"].startswith("offline: ")
    [offline] = (folder / "wandb" / "wandb").glob("offline-run-*/run-*.wandb")
    assert offline.stat().st_size > 0


def test_bad_trackers_are_refused_in_one_line(toy, tmp_path, monkeypatch):
    grid = toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["lora"])
    with pytest.raises(ConfigError, match=r"train.trackers\[0\]: 'tensorbord' is not a known tracker; allowed: "
                                          r"tensorboard, mlflow, trackio, wandb"):
        load_grid(data=grid, overrides=["train.trackers=[tensorbord]"])
    with pytest.raises(ConfigError, match="train.trackers: .* names a tracker twice"):
        load_grid(data=grid, overrides=["train.trackers=[mlflow, mlflow]"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    problems = check(load_grid(data=grid, overrides=["train.trackers=[wandb]"]), read_data=False)
    assert "train.trackers: wandb is not installed; pip install 'peftbench[wandb]'" in problems
    run = expand(load_grid(data=grid, overrides=["train.trackers=[tensorboard]"]))[0]
    assert run.run_id == expand(load_grid(data=grid))[0].run_id  # where records go is not what a run computes
