"""The HTML report as a reader sees it: rendered by headless Chromium (Debian's chromium, installed by
.ci/run where missing), every figure decoded and visible, no console errors, a screenshot taken."""
import re
import shutil
import subprocess

import pytest

from conftest import toy_grid
from peftbench.config import load_grid
from peftbench.report import render
from peftbench.runner import run_grid

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium; "
                                                     ".ci/run installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


def _chromium(args, profile):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


def test_the_report_displays_in_headless_chromium(toy, tmp_path):
    data = toy_grid(toy, tmp_path / "out", models=["tiny:bert"], methods=["full", "lora"], epochs=2)
    data["seeds"] = [1, 2]
    data["tasks"][0]["name"] = "toy <b>&"  # names are escaped
    assert run_grid(load_grid(data=data), in_process=True, show_progress=False).failed == []
    _, page = render(tmp_path / "out", echo=lambda *a: None, resamples=100)
    url = page.resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    shown, total = (int(re.search(rf'{k}="(\d+)"', body).group(1)) for k in ("data-images-shown", "data-images"))
    assert total >= 3 and shown == total, body  # curves, Pareto, PES bars: all decoded and laid out
    assert "toy &lt;b&gt;&amp;" in dom.stdout and "<b>&amp;" not in dom.stdout
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]
    assert errors == []
    shot = tmp_path / "report.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,1800", url], tmp_path / "p2")
    assert res.returncode == 0 and shot.stat().st_size > 20_000
    shutil.copy(shot, "/tmp/peftbench-report-screenshot.png") if __import__("os").environ.get("PEFTBENCH_KEEP_SCREENSHOT") else None


def test_a_broken_page_would_be_caught(tmp_path):
    """The checks above can fail: a script error and a broken image are seen."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><img src='data:image/png;base64,AAAA'><script>"
                   "window.addEventListener('load', function () { var i = Array.from(document.images);"
                   "document.body.setAttribute('data-images-shown', i.filter(function (x) { return x.naturalWidth > 0; }).length);"
                   "}); undefinedFunction();</script></body></html>")
    dom = _chromium(["--dump-dom", bad.resolve().as_uri()], tmp_path / "p")
    assert 'data-images-shown="0"' in dom.stdout
    assert any("Uncaught" in line for line in dom.stderr.splitlines() if "CONSOLE" in line)
