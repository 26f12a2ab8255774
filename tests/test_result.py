"""RunResult: what result.json holds, typed. Files written by earlier peftbench versions load, read the same
through attributes as through their keys, and write back unchanged (plus their version)."""
import json
from pathlib import Path

import pytest

from peftbench.result import VERSION, RunResult
from peftbench.store import Store

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "results").glob("*.json"))  # real runs' result.json,
# named by the commit that wrote them


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_result_files_of_earlier_versions_load_and_round_trip(path):
    raw = json.loads(path.read_text())
    assert "version" not in raw  # written before results were versioned
    r = RunResult.load(raw)
    assert r.version == 1 and r.to_json() == {"version": 1, **raw}  # nothing lost, nothing added but the version
    assert RunResult.load(r.to_json()) == r
    assert (r.run_id, r.slug, r.model, r.method, r.task, r.task_type, r.seed) == \
        (raw["run_id"], raw["slug"], raw["model"], raw["method"], raw["task"], raw["task_type"], raw["seed"])
    assert r.test.metrics == raw["test"]["metrics"] and r.test.loss == raw["test"]["loss"]
    assert r.test.samples == raw["test"]["samples"]
    assert r.test.metrics_by_group == raw["test"].get("metrics_by_group")
    assert r.training.lr == raw["training"]["lr"] and r.training.best_epoch == raw["training"]["best_epoch"]
    assert r.training.validation_metric == raw["training"]["validation_metric"]
    assert r.score == raw["test"]["metrics"][raw["training"]["validation_metric"]]
    assert r.parameters.total == raw["parameters"]["total"] and r.memory.peak_memory_mb == raw["memory"]["peak_memory_mb"]
    assert r.timing.train_seconds == raw["timing"]["train_seconds"] and r.timing.contended is raw["timing"]["contended"]
    assert r.curves == raw["curves"] and r.provenance == raw["provenance"] and r.data == raw["data"]


def test_the_store_keeps_what_it_was_given_and_answers_typed(tmp_path):
    store = Store(tmp_path)
    try:
        for path in FIXTURES:
            raw = json.loads(path.read_text())
            store.record_result(raw, {"seed": raw["seed"], "task": {"name": raw["task"]}}, "g")
        got = {r.run_id: r for r in store.results(with_config=True)}
        for path in FIXTURES:
            raw = json.loads(path.read_text())
            r = got[raw["run_id"]]
            assert isinstance(r, RunResult) and r.to_json() == {"version": 1, **raw}  # config / folder not written
            assert r.config == {"seed": raw["seed"], "task": {"name": raw["task"]}} and r.folder.endswith(raw["slug"])
            assert store.result(raw["run_id"]) == RunResult.load(raw)
    finally:
        store.close()


def test_fields_a_version_does_not_name_are_kept():
    """A file from a newer peftbench (a section or a key this one does not know) loads and writes back whole."""
    raw = {"version": VERSION + 1, "run_id": "x", "seed": 3, "energy": {"joules": 12.5},
           "timing": {"train_seconds": 2.0, "gpu_busy": 0.9}, "test": {"metrics": {"accuracy": 0.5}, "loss": 0.7}}
    r = RunResult.load(raw)
    assert r.to_json() == raw and r.timing.train_seconds == 2.0 and r.test.metrics["accuracy"] == 0.5
    assert r.memory.peak_memory_mb is None and r.training.validation_metric is None and r.score is None
