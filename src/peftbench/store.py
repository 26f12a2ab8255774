"""The results store: one SQLite database plus one folder per run.

``results/peftbench.sqlite`` holds a row per run (status, headline numbers, the full result JSON),
its per-epoch curves and its test metrics.  ``results/runs/<slug>/`` holds the resolved config,
``result.json``, ``predictions.jsonl``, the trained weights and the run's log.  A run's folder is
written by the run's own process; only the grid's process writes the database, from finished
folders, so a crash anywhere loses nothing that had finished (``sync`` re-reads folders).
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from .errors import OneLine
from .result import RunResult
from .run.folder import RunFolder

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, slug TEXT, grid TEXT, model TEXT, method TEXT, task TEXT, seed INTEGER,
    status TEXT, error TEXT, config TEXT, result TEXT,
    trainable_params INTEGER, non_trainable_params INTEGER, total_params INTEGER,
    peak_memory_mb REAL, train_seconds REAL, eval_seconds REAL,
    train_samples_per_second REAL, train_tokens_per_second REAL, updated REAL
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT, epoch INTEGER, train_loss REAL, val_loss REAL, val_metrics TEXT, extra TEXT,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, split TEXT, name TEXT, value REAL, PRIMARY KEY (run_id, split, name)
);
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT PRIMARY KEY, host TEXT, pid INTEGER, claimed REAL, heartbeat REAL
);
"""
# a claim with no heartbeat for this long is taken to be dead (on the same host, a claim whose pid is gone is too)
STALE_CLAIM_SECONDS = float(os.environ.get("PEFTBENCH_STALE_CLAIM_SECONDS", 600))
DB_NAME = "peftbench.sqlite"
REPORT_SETTINGS = "report-settings.json"  # the grid's report settings, kept beside the store for `peftbench report`
# columns added after the first schema: (name, type); older databases get them on open
ADDED_COLUMNS = (("train_cpu_seconds", "REAL"), ("cpu_share", "REAL"), ("threads", "INTEGER"), ("contended", "INTEGER"),
                 ("cell", "TEXT"))


def repair(root: str | Path) -> tuple[Path | None, int]:
    """Move a damaged database aside and rebuild it from the run folders (every finished run's result and
    config). Returns (where the old file went, runs recovered)."""
    root = Path(root)
    db = root / DB_NAME
    moved = None
    try:
        Store(root).close()
    except StoreError:
        moved = db.with_name(f"{DB_NAME}.damaged-{int(time.time())}")
        db.rename(moved)
        for extra in ("-wal", "-shm"):
            side = db.with_name(DB_NAME + extra)
            if side.exists():
                side.rename(moved.with_name(moved.name + extra))
    store = Store(root)
    try:
        return moved, store.sync()
    finally:
        store.close()


def _alive(host: str, pid: int, heartbeat: float, now: float) -> bool:
    """A claim is alive while its heartbeat is fresh and, on this host, its process exists (a reused pid with a
    stale heartbeat is not the runner)."""
    if now - heartbeat >= STALE_CLAIM_SECONDS:
        return False
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)  # PermissionError: alive, another user's process
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return True


def cell_key(config: dict) -> str:
    """Runs whose resolved configs are identical except for the seed form one cell of the comparison."""
    from .config import config_hash, identity

    return config_hash({k: v for k, v in identity(config).items() if k != "seed"})


class StoreError(OneLine, RuntimeError):
    """A one-line, user-facing error about the results store."""


def damaged(root: Path, exc: BaseException) -> StoreError:
    what = " ".join(str(exc).split())[:200]  # SQLite's integrity report spans lines
    return StoreError(f"results store '{Path(root) / DB_NAME}' is damaged ({what}); rebuild it from the run "
                      f"folders: peftbench repair {root}")


class Store:
    LOCK_WAIT_SECONDS = 60  # how long opening waits for another process's lock before it gives up

    def __init__(self, root: str | Path, check: bool = True):
        """``check``: verify every page first (``PRAGMA quick_check``), so damage is found before a grid writes."""
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.LOCK_WAIT_SECONDS
        while True:  # a locked store is busy, not damaged: two runners creating it at once
            self.db = sqlite3.connect(self.root / DB_NAME, timeout=self.LOCK_WAIT_SECONDS)
            try:
                self.db.execute("PRAGMA journal_mode=WAL")  # (answers 'locked' at once, without the busy wait)
                self.db.executescript(SCHEMA)
                if check:
                    problems = [row[0] for row in self.db.execute("PRAGMA quick_check(3)")]
                    if problems != ["ok"]:
                        raise sqlite3.DatabaseError("; ".join(problems)[:200])
                break
            except sqlite3.OperationalError as exc:
                self.db.close()
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise damaged(self.root, exc) from None
                if time.monotonic() > deadline:  # busy, not damaged: say so, repair would not help
                    raise StoreError(f"results store '{self.root / DB_NAME}' stayed locked for "
                                     f"{self.LOCK_WAIT_SECONDS:g} s ({exc}); another process holds it: wait for "
                                     "it or stop it") from None
                time.sleep(0.1)  # a fixed 50 tries (5 s) was too short on a machine busy writing to disk
            except sqlite3.DatabaseError as exc:
                self.db.close()
                raise damaged(self.root, exc) from None
        have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        with self.db:
            for name, kind in ADDED_COLUMNS:
                if name not in have:
                    try:
                        self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as exc:  # another runner opening the store added it first
                        if "duplicate column" not in str(exc):
                            raise

    def close(self):
        self.db.close()

    # ------------------------------------------------------------ claims: several runners on one store

    def claim(self, run_id: str) -> bool:
        """Take ``run_id`` for this process unless it is finished or claimed by a live runner (same host: its pid
        is alive; another host: a heartbeat within STALE_CLAIM_SECONDS). Atomic across processes."""
        me, now = (socket.gethostname(), os.getpid()), time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.status(run_id) == "ok":
                self.db.execute("COMMIT")
                return False
            row = self.db.execute("SELECT host, pid, heartbeat FROM claims WHERE run_id=?", (run_id,)).fetchone()
            if row and (row[0], row[1]) != me and _alive(row[0], row[1], row[2], now):
                self.db.execute("COMMIT")
                return False
            self.db.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)", (run_id, *me, now, now))
            self.db.execute("COMMIT")
            return True
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def heartbeat(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE claims SET heartbeat=? WHERE run_id=? AND host=? AND pid=?",
                            (time.time(), run_id, socket.gethostname(), os.getpid()))

    def release(self, run_id: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM claims WHERE run_id=? AND host=? AND pid=?",
                            (run_id, socket.gethostname(), os.getpid()))

    def run_dir(self, slug: str) -> Path:
        return self.runs_dir / slug

    def status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def result(self, run_id: str) -> RunResult | None:
        """A finished run's result, or None."""
        row = self.db.execute("SELECT result FROM runs WHERE run_id=? AND status='ok'", (run_id,)).fetchone()
        return RunResult.load(json.loads(row[0])) if row else None

    def record_result(self, result: RunResult | dict, config: dict, grid: str) -> None:
        result = RunResult.load(result)
        p, m, t = result.parameters, result.memory, result.timing
        rid = result.run_id
        with self.db:
            row = dict(run_id=rid, slug=result.slug, grid=grid, model=result.model, method=result.method,
                       task=result.task, seed=result.seed, status="ok", error=None, config=json.dumps(config),
                       result=json.dumps(result.to_json()), trainable_params=p.trainable,
                       non_trainable_params=p.non_trainable, total_params=p.total, peak_memory_mb=m.peak_memory_mb,
                       train_seconds=t.train_seconds, eval_seconds=t.eval_seconds,
                       train_samples_per_second=t.train_samples_per_second,
                       train_tokens_per_second=t.train_tokens_per_second, updated=time.time(),
                       train_cpu_seconds=t.train_cpu_seconds, cpu_share=t.cpu_share, threads=t.threads,
                       contended=t.contended, cell=cell_key(config))
            self.db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                            tuple(row.values()))
            self.db.execute("DELETE FROM curves WHERE run_id=?", (rid,))
            self.db.execute("DELETE FROM metrics WHERE run_id=?", (rid,))
            self.db.execute("DELETE FROM claims WHERE run_id=?", (rid,))  # a finished run needs no claim (recovered
            # from its folder after its runner died, the claim would otherwise outlive it)
            for c in result.curves:
                extra = {k: v for k, v in c.items() if k not in ("epoch", "train_loss", "val_loss", "val_metrics")}
                self.db.execute("INSERT INTO curves VALUES (?,?,?,?,?,?)", (rid, c["epoch"], c["train_loss"],
                                c["val_loss"], json.dumps(c["val_metrics"]), json.dumps(extra)))
            for name, value in result.test.metrics.items():
                self.db.execute("INSERT INTO metrics VALUES (?,?,?,?)", (rid, "test", name, value))
            self.db.execute("INSERT INTO metrics VALUES (?,?,?,?)", (rid, "test", "loss", result.test.loss))

    def record_failure(self, run_id: str, slug: str, config: dict, grid: str, status: str, error: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO runs (run_id, slug, grid, model, method, task, seed, status, error, config, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, slug, grid, config["model"]["name"], config["method"]["label"], config["task"]["name"], config["seed"],
                 status, error, json.dumps(config), time.time()))

    def sync(self, grid: str = "") -> int:
        """Record finished run folders the database does not know yet (e.g. after the grid process was killed)."""
        found = self.unrecorded()
        for r in found:
            self.record_result(r, r.config, grid)
        return len(found)

    def unrecorded(self) -> list[RunResult]:
        """Finished run folders the database does not know yet, as ``results(with_config=True)`` gives them,
        without recording them (``sync`` records)."""
        out = []
        for d in sorted(self.runs_dir.iterdir()) if self.runs_dir.exists() else []:
            folder = RunFolder(d)
            if folder.finished():
                result = RunResult.load(folder.read(folder.result))
                if self.status(result.run_id) != "ok":
                    out.append(result.model_copy(update={"config": folder.read(folder.config), "folder": str(d)}))
        return out

    def results(self, status: str = "ok", with_config: bool = False) -> list[RunResult]:
        """Finished runs' results; ``with_config`` adds each run's resolved config as ``config`` and the folder."""
        rows = self.db.execute("SELECT result, config, slug FROM runs WHERE status=? ORDER BY model, task, method, seed",
                               (status,))
        out = []
        for result, config, slug in rows:
            r = RunResult.load(json.loads(result))
            if with_config:
                r = r.model_copy(update={"config": json.loads(config), "folder": str(self.run_dir(slug))})
            out.append(r)
        return out

    def failures(self) -> list[tuple]:
        return self.db.execute("SELECT slug, status, error FROM runs WHERE status!='ok' ORDER BY slug").fetchall()

def merge(sources: list, into) -> tuple[int, int]:
    """Join results folders (e.g. the shards of a Slurm array) into ``into``: every finished run folder is
    copied once (a run finished in two sources is kept from the first) and recorded in the target's store.
    Returns (runs added, duplicates skipped)."""
    import shutil

    target = Store(into)
    added = duplicates = 0
    try:
        for source in map(Path, sources):
            if not (source / DB_NAME).exists() and not (source / "runs").is_dir():
                raise StoreError(f"'{source}' is not a peftbench results folder (no {DB_NAME}, no runs/)")
            grids = _grid_names(source)
            for d in sorted((source / "runs").iterdir()) if (source / "runs").is_dir() else []:
                folder = RunFolder(d)
                if not folder.finished():
                    continue
                result = RunResult.load(folder.read(folder.result))
                if target.status(result.run_id) == "ok":
                    duplicates += 1
                    continue
                dest = target.run_dir(d.name)
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(d, dest)
                target.record_result(result, folder.read(folder.config), grids.get(result.run_id, ""))
                added += 1
    finally:
        target.close()
    return added, duplicates


def _grid_names(root: Path) -> dict[str, str]:
    """run_id -> the grid it was recorded under in its own store (empty where that store is absent or unreadable)."""
    try:
        db = sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True)
        try:
            return {run_id: grid or "" for run_id, grid in db.execute("SELECT run_id, grid FROM runs")}
        finally:
            db.close()
    except sqlite3.Error:
        return {}
