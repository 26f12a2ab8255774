"""Run a grid: each run in its own process, results into one store, finished runs skipped.

Runs go one at a time by default (each gets every core). ``jobs`` > 1 runs several at once, each in its own
process on its own share of the cores (or, with ``devices``, one run per GPU); ``shard=(i, n)`` keeps the
grid's runs i, i+n, i+2n, ... (a Slurm array's part). However many runners share a store — jobs, shells,
shards on a shared disk — each run is claimed in the store before it starts, so none is trained twice.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .config import GridSpec, RunSpec, expand
from .result import RunResult
from .executors import executor as executor_for
from .run.launch import run_one
from .store import Store
from .sweeps import count_follow_ups, extension, follow_ups
from . import search


@dataclass
class GridSummary:
    total: int = 0
    skipped: int = 0
    finished: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    claimed_elsewhere: list[str] = field(default_factory=list)  # runs another runner on this store took
    waiting: list[str] = field(default_factory=list)  # staged sweeps whose later seeds wait for their comparison


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


def shard_of(runs: list[RunSpec], shard: tuple[int, int] | None) -> list[RunSpec]:
    """Shard ``i`` of ``n`` (0-based): runs i, i+n, i+2n, ... of the grid's stable order; the shards of a grid
    are disjoint and together hold every run once."""
    if not shard:
        return runs
    i, n = shard
    return runs[i::n]


@dataclass(frozen=True)
class Where:
    """Where and how many runs execute at once: ``executor`` (``local`` or ``ray``; see executors/), ``jobs``
    runs at once, ``devices`` (a GPU per slot), ``address`` (a Ray cluster)."""

    executor: str = "local"
    jobs: int = 1
    devices: list[str] | None = None
    address: str | None = None


class _Grid:
    """One grid's execution against one store: claims, runs, records (thread-safe: a store connection each)."""

    def __init__(self, grid: GridSpec, summary: GridSummary, in_process: bool, show_progress: bool, bar):
        self.grid, self.summary, self.in_process, self.show, self.bar = grid, summary, in_process, show_progress, bar
        self.lock = threading.Lock()

    def claim(self, store: Store, run: RunSpec) -> bool:
        """Take the run, unless it finished meanwhile or is in flight in another runner on this store."""
        if store.claim(run.run_id):
            return True
        with self.lock:
            self.summary.claimed_elsewhere.append(run.slug)
            self.bar.update(1)
        return False

    def record(self, store: Store, run: RunSpec, result: RunResult | None, error: str | None, status: str) -> None:
        """Store what the run gave and release its claim."""
        config = run.model_dump(mode="json")
        try:
            if result is not None:
                store.record_result(result, config, self.grid.name)
            else:
                store.record_failure(run.run_id, run.slug, config, self.grid.name, status, error)
        finally:  # the claim goes, whatever happened
            store.release(run.run_id)
        with self.lock:
            if result is not None:
                self.summary.finished.append(run.slug)
                m = result.test.metrics
                self.bar.write(f"done  {run.slug}: " + ", ".join(f"{k}={v:.4f}" for k, v in list(m.items())[:4]))
            elif status != "interrupted":
                self.summary.failed.append((run.slug, error))
                self.bar.write(f"FAIL  {run.slug}: {error}")
            self.bar.update(1)

    def executing(self, run: RunSpec) -> None:
        """Runs one at a time: the bar names the run in flight."""
        self.bar.set_postfix_str(run.slug[:60])

    def interrupted(self, store: Store, run: RunSpec) -> None:
        """Ctrl-C reached the run: it is marked, and a rerun of the grid redoes it."""
        self.record(store, run, None, "interrupted by the user (Ctrl-C); run the grid again to redo it", "interrupted")

    def execute(self, store: Store, run: RunSpec, env: dict | None = None) -> None:
        if not self.claim(store, run):
            return
        try:
            with Heartbeat(store.root, run.run_id):
                outcome = run_one(run, store.run_dir(run.slug), self.in_process, self.show, env)
        except KeyboardInterrupt:  # the run is marked, the grid stops; finished runs stay, a rerun resumes
            self.interrupted(store, run)
            raise
        except BaseException:
            store.release(run.run_id)
            raise
        self.record(store, run, *outcome)


def run_grid(grid: GridSpec, in_process: bool = False, show_progress: bool = True, echo=print, jobs: int = 1,
             devices: list[str] | None = None, shard: tuple[int, int] | None = None, executor: str = "local",
             address: str | None = None) -> GridSummary:
    """``executor``: ``local`` (this machine: one run at a time, or ``jobs`` at once) or ``ray`` (one Ray task per
    run on the cluster at ``address``, or a local Ray instance)."""
    if jobs > 1 and in_process:
        raise ValueError("jobs > 1 runs each run in its own process; drop in_process")
    where = Where(executor, max(jobs, len(devices or [])), devices, address)
    run_all = executor_for(executor)
    store = Store(grid.output_dir)
    try:
        recovered = store.sync(grid.name)
        if recovered:
            echo(f"recovered {recovered} finished run(s) from run folders")
        runs = shard_of(expand(grid), shard)
        summary = GridSummary(total=len(runs) + count_follow_ups(grid, shard) + search.count(grid, shard))
        bar = tqdm(total=summary.total, desc=f"grid {grid.name}", unit="run", disable=not show_progress, position=0)
        state = _Grid(grid, summary, in_process, show_progress and where.jobs == 1, bar)

        def execute(runs: list[RunSpec]) -> None:
            todo = [r for r in runs if store.status(r.run_id) != "ok"]
            if len(todo) < len(runs):
                summary.skipped += len(runs) - len(todo)
                bar.update(len(runs) - len(todo))
                echo(f"skipping {len(runs) - len(todo)} finished run(s) of {len(runs)}")
            run_all(state, store, todo, where)

        try:
            execute(runs)
            tried: set[str] = set()
            while True:  # optuna searches: each batch of trials is drawn from the trials finished before it
                searched = search.state(grid, store.result, shard)
                if not searched.pending or {r.run_id for r in searched.pending} <= tried:  # done, or a trial failed
                    break
                tried |= {r.run_id for r in searched.pending}
                execute(searched.pending)
            # trials that trained nothing here: an earlier sitting ran them, or a trial drew a setting already run
            before = len(searched.finished) - len(tried & set(searched.finished))
            summary.skipped += before
            bar.update(before)
            extended: set[str] = set()
            while True:  # sweeps with extend: a rate beyond an edge winner, until the best lies inside
                beyond, edges = extension(grid, store.result, shard)
                if not beyond or {r.run_id for r in beyond} <= extended:  # done, or an extended run failed
                    break
                extended |= {r.run_id for r in beyond}
                summary.total += len(beyond)
                bar.total = summary.total
                echo(f"extended sweeps: {len(beyond)} run(s) at a rate beyond the edge of the rates tried")
                execute(beyond)
            for line in edges:
                echo(f"edge: {line}")
            later, summary.waiting = follow_ups(grid, store.result, shard)  # staged sweeps: the chosen rate's seeds
            later, summary.waiting = later + searched.later, summary.waiting + searched.waiting
            if later:
                echo(f"staged sweeps: {len(later)} run(s) at the chosen settings")
                execute(later)
            for line in summary.waiting:
                echo(f"waiting: {line}")
        finally:
            bar.close()
        return summary
    finally:
        store.close()
