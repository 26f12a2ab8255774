"""Run the four studies' offline twins and publish their reports in docs/results/<twin>/.

    python bench/twins.py                      # all four, in order; a grid resumes where it stopped
    python bench/twins.py persian-2025 --jobs 2 --store ~/peftbench-twins
    python bench/twins.py persian-2025 --jobs 2 --set 'methods=[{name: full}, {name: lora}]'   # part of a grid

Each twin is `peftbench run presets/<twin>-offline.yaml` into its own results folder (outside the repository:
run folders hold trained weights), then `peftbench report`; the report's Markdown, HTML, CSV / LaTeX tables and
figures are copied into docs/results/<twin>/ with an archive of what its verdicts need (archive.jsonl.gz: configs,
results, per-example test predictions) and a README naming the command, the commit, the versions and the
machine. Needs ../shared/datasets and the offline models (../shared/tools/offline-models).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TWINS = ["persian-2025", "slovene-peft", "hulu-puli", "multilingual-news"]
REDECIDED = ["persian-food-redecided"]  # cells of the twins rerun with fair tuning (issue 31); not in the default


def versions() -> dict:
    from importlib import metadata

    return {p: metadata.version(p) for p in ("torch", "transformers", "peft", "accelerate", "datasets")}


def machine() -> str:
    import os

    import psutil

    return (f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores, "
            f"{psutil.virtual_memory().total / 2**30:.1f} GB RAM, no GPU; Python {platform.python_version()}")


def counts(store: Path) -> dict:
    db = sqlite3.connect(store / "peftbench.sqlite")
    rows = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    db.close()
    return rows


def recorded(store: Path) -> tuple[dict, float]:
    """The peftbench commits the finished runs were recorded at (short hash: runs) and their summed wall time in
    seconds: a sitting stopped and resumed (another session, another commit) is described by its runs, not by the
    last sitting's clock."""
    from collections import Counter

    from peftbench.store import Store

    results = Store(store, check=False).results()
    commits = Counter((r.provenance.get("git_commit") or "unknown")[:7] for r in results)
    return dict(commits), sum(r.timing.wall_seconds or 0.0 for r in results)


def publish(twin: str, store: Path, command: str, seconds: float) -> Path:
    out = ROOT / "docs" / "results" / twin
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("report.md", "report.html"):
        shutil.copy2(store / name, out / name)
    if (store / "report").is_dir():
        shutil.copytree(store / "report", out / "report")
    from peftbench import archive

    archive.write(store, out / "archive.jsonl.gz")  # what the verdicts need, so any machine can recompute them
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    status = counts(store)
    commits, run_seconds = recorded(store)
    (out / "README.md").write_text(
        f"# {twin}: offline twin\n\n"
        f"```bash\n{command}\n```\n\n"
        f"- grid: [`presets/{twin}-offline.yaml`](../../../src/peftbench/presets/{twin}-offline.yaml)\n"
        f"- runs: {json.dumps(status)}; wall time of the last sitting {seconds / 60:.0f} min; the runs' own wall "
        f"time summed {run_seconds / 3600:.1f} h (divide by --jobs for the sitting)\n"
        f"- runs recorded at peftbench commit {', '.join(f'{c} ({n} runs)' for c, n in sorted(commits.items()))}; "
        f"published at {commit}; {', '.join(f'{k} {v}' for k, v in versions().items())}\n"
        f"- machine: {machine()}\n\n"
        "The report: [report.md](report.md) (tables), [report.html](report.html) (sortable, with figures), "
        "`report/` (every table as CSV and LaTeX, every figure as PNG and SVG). Runs marked contended shared "
        "the cores with other work: their timings are kept out of the clean averages. "
        "[archive.jsonl.gz](archive.jsonl.gz) holds every run's config, result and per-example test predictions "
        f"({(out / 'archive.jsonl.gz').stat().st_size / 1e6:.1f} MB, no weights): `peftbench report "
        f"docs/results/{twin}/archive.jsonl.gz` recomputes the report and its verdicts on any machine.\n",
        encoding="utf-8")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("twins", nargs="*", default=TWINS, choices=TWINS + REDECIDED)
    ap.add_argument("--store", default="~/peftbench-twins", help="where the results folders go (default ~/peftbench-twins)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (default 1: each run gets every core, and its timings stay clean)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a grid override, as `peftbench run` takes it (repeatable); run ids do not depend on which "
                         "other runs the grid holds, so a later sitting without it resumes the same store")
    args = ap.parse_args(argv)
    for twin in args.twins:
        store = Path(args.store).expanduser() / twin
        run_args = ["run", f"presets/{twin}-offline.yaml", f"output_dir={store}", *args.set, "--jobs", str(args.jobs),
                    "--quiet"]
        start = time.time()
        code = subprocess.call([sys.executable, "-m", "peftbench.cli", *run_args], cwd=ROOT)
        command = " ".join(["peftbench", *(shlex.quote(a) for a in run_args)])
        if code not in (0, 1):
            print(f"{twin}: peftbench run exited {code}; what finished is kept, run again to resume", file=sys.stderr)
            return code
        print(f"{twin}: published in {publish(twin, store, command, time.time() - start)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
