"""Run a grid: each run in its own process, results into one store, finished runs skipped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .config import GridSpec, RunSpec, expand
from .run.folder import RunFolder
from .store import Store


@dataclass
class GridSummary:
    total: int = 0
    skipped: int = 0
    finished: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    claimed_elsewhere: list[str] = field(default_factory=list)  # runs another runner on this store took


class Heartbeat:
    """While a run is in flight, refresh its claim every ``every`` seconds (its own connection, in a thread), so
    runners on other hosts see it alive."""

    def __init__(self, root: Path, run_id: str, every: float = 30.0):
        self.root, self.run_id, self.every = root, run_id, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.wait(self.every):
            try:
                store = Store(self.root, check=False)
                store.heartbeat(self.run_id)
                store.close()
            except Exception:  # a missed beat only makes the claim look older
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def _die_with_parent():  # pragma: no cover - runs in the child
    """Linux: the run's process gets SIGTERM if the grid process dies (no orphans writing results)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_one(run: RunSpec, run_dir: Path, in_process: bool = False, show_progress: bool = True) -> tuple[dict | None, str | None, str]:
    """Execute one run into ``run_dir``. Returns (result, error message, status)."""
    folder = RunFolder(run_dir)
    folder.reset()
    folder.write_config(run.model_dump(mode="json"))
    if in_process:
        from .run.worker import main as worker_main

        code = worker_main([str(folder.path)])
    else:
        env = dict(os.environ, PEFTBENCH_PROGRESS="1" if show_progress else "0")
        proc = subprocess.run([sys.executable, "-m", "peftbench.run.worker", str(folder.path)], env=env,
                              preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        code = proc.returncode
    if folder.result.exists():
        return folder.read(folder.result), None, "ok"
    if folder.error.exists():
        return None, folder.read(folder.error)["error"], "failed"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (likely out of memory)" if name == "SIGKILL" else ""
        return None, f"run process killed by {name}{hint}", "killed"
    return None, f"run process exited with code {code} and wrote no result", "failed"


def run_grid(grid: GridSpec, in_process: bool = False, show_progress: bool = True, echo=print) -> GridSummary:
    store = Store(grid.output_dir)
    try:
        recovered = store.sync(grid.name)
        if recovered:
            echo(f"recovered {recovered} finished run(s) from run folders")
        runs = expand(grid)
        summary = GridSummary(total=len(runs))
        todo = [r for r in runs if store.status(r.run_id) != "ok"]
        summary.skipped = len(runs) - len(todo)
        if summary.skipped:
            echo(f"skipping {summary.skipped} finished run(s) of {len(runs)}")
        bar = tqdm(total=len(runs), initial=summary.skipped, desc=f"grid {grid.name}", unit="run",
                   disable=not show_progress, position=0)
        for run in todo:
            if not store.claim(run.run_id):  # finished meanwhile, or in flight in another runner on this store
                summary.claimed_elsewhere.append(run.slug)
                bar.update(1)
                continue
            bar.set_postfix_str(run.slug[:60])
            run_dir = store.run_dir(run.slug)
            config = run.model_dump(mode="json")
            try:
                with Heartbeat(store.root, run.run_id):
                    result, error, status = run_one(run, run_dir, in_process, show_progress)
            except KeyboardInterrupt:  # the run is marked, the grid stops; finished runs stay, a rerun resumes
                store.record_failure(run.run_id, run.slug, config, grid.name, "interrupted",
                                     "interrupted by the user (Ctrl-C); run the grid again to redo it")
                bar.close()
                raise
            else:
                if result is not None:
                    store.record_result(result, config, grid.name)
                    summary.finished.append(run.slug)
                    m = result["test"]["metrics"]
                    bar.write(f"done  {run.slug}: " + ", ".join(f"{k}={v:.4f}" for k, v in list(m.items())[:4]))
                else:
                    store.record_failure(run.run_id, run.slug, config, grid.name, status, error)
                    summary.failed.append((run.slug, error))
                    bar.write(f"FAIL  {run.slug}: {error}")
            finally:  # the claim goes, whatever happened to the run
                store.release(run.run_id)
            bar.update(1)
        bar.close()
        return summary
    finally:
        store.close()
