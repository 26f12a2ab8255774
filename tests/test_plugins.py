"""A plugin package installed beside peftbench (a site folder holding its module and its .dist-info with entry
points) reaches every process: the grid's, each run's worker with --jobs 2, and plan's profiling processes."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from peftbench import registry

TESTS = Path(__file__).resolve().parent
ENTRY_POINTS = """\
[peftbench.methods]
head_and_norms = toy_plugin:HeadAndNorms

[peftbench.tasks]
keyword = toy_plugin:KeywordTask
"""  # toy_plugin.py: the module tests/test_extension.py registers in-process


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(TESTS / "toy_plugin.py", site / "toy_plugin.py")
    info = site / "peftbench_toyplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: peftbench-toyplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def _cli(site, *args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1", PEFTBENCH_THREADS="1")
    return subprocess.run([sys.executable, "-m", "peftbench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_an_installed_plugin_reaches_the_workers_and_plan(site, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: plugin
        output_dir: {tmp_path / 'out'}
        models: [tiny:bert]
        methods: [head_and_norms, {{name: lora, r: 2}}]
        tasks:
          - {{name: kw, type: keyword, data: {{source: "recipe:demo_sentiment", options: {{keyword: great}}}},
             max_length: 32}}
        seeds: [1]
        train: {{epochs: 1, batch_size: 16, threads: 1}}
        """))
    assert "head_and_norms" not in registry.names("method")  # this process has no plugin on its path
    done = _cli(site, "run", str(grid), "--jobs", "2", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    db = sqlite3.connect(tmp_path / "out" / "peftbench.sqlite")
    rows = db.execute("SELECT method, status, result FROM runs").fetchall()
    assert sorted((m, s) for m, s, _ in rows) == [("head_and_norms", "ok"), ("lora", "ok")]
    result = json.loads([r for m, _, r in rows if m == "head_and_norms"][0])
    assert result["task_type"] == "keyword" and 0 <= result["test"]["metrics"]["accuracy"] <= 1
    assert result["parameters"]["trainable"] < result["parameters"]["total"]
    assert "head_and_norms" in (tmp_path / "out" / "report.md").read_text()
    planned = _cli(site, "plan", str(grid), "--steps", "1", "--json", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "head_and_norms" in planned.stdout and "keyword" not in planned.stderr


def test_a_registration_gives_the_name_once(tmp_path):
    from peftbench.methods.base import Method

    @registry.registered_as("method")
    class Once(Method):
        name = "once_only"

    try:
        assert registry.get("method", "once_only") is Once
        registry.register("method", "twice", "peftbench.methods.full:FullFineTuning")
        with pytest.raises(ValueError, match="method 'twice' .* calls itself 'full'; give it one name"):
            registry.get("method", "twice")
    finally:
        registry.unregister("method", "once_only")
        registry.unregister("method", "twice")
