"""The Ray executor on a local Ray instance: one Ray task per run, results written back to the one store, the
same numbers as the local executor, a failing run recorded and the grid going on."""
import pytest

from conftest import store_rows, toy_grid
from peftbench.config import load_grid
from peftbench.runner import run_grid
from peftbench.store import Store

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")


def test_a_grid_on_a_local_ray_instance_lands_in_one_store(toy, tmp_path):
    data = toy_grid(toy, tmp_path / "ray", models=["tiny:bert"], methods=["lora", "full"], epochs=1, threads=1)
    data["tasks"].append({"name": "broken", "data": {"source": str(toy), "text": "nope"}})
    summary = run_grid(load_grid(data=data), show_progress=False, executor="ray")
    assert not ray.is_initialized()  # the instance it started is shut down
    assert len(summary.finished) == 2 and len(summary.failed) == 2
    assert all("column 'nope' not in the data" in error for _, error in summary.failed)
    rows, curves = store_rows(tmp_path / "ray")
    assert sorted(r[1] for r in rows) == ["failed", "failed", "ok", "ok"]
    by_ray = {r.slug: r for r in Store(tmp_path / "ray").results()}
    assert len({r.provenance["pid"] for r in by_ray.values()}) == 2  # each run in its own process
    data["output_dir"] = str(tmp_path / "local")
    data["tasks"].pop()
    run_grid(load_grid(data=data), in_process=True, show_progress=False)
    for local in Store(tmp_path / "local").results():
        assert by_ray[local.slug].test.metrics == local.test.metrics  # same config, same numbers
    again = run_grid(load_grid(data=data | {"output_dir": str(tmp_path / "ray")}), show_progress=False, executor="ray")
    assert again.skipped == 2 and again.finished == []
