"""Run a grid in one process with a fault installed: ``python chaos.py FAULT@N GRID.yaml``.

The process SIGKILLs itself at the N-th time it reaches the fault's point (counted over the whole grid), the way
the kernel's OOM killer or a pre-empted node would stop it: no ``finally``, no ``atexit``, no flushing.

  result.json   after ``result.json.PID.tmp`` is written, before it is renamed into place (the run's last write)
  predictions   half-way through writing ``predictions.jsonl``
  commit        inside the store's transaction that records a finished run, before it commits
  checkpoint    after a run's checkpoint (train.checkpoint_every) is renamed into place (the N-th epoch saved)
"""
import os
import signal
import sys

from peftbench.config import load_grid
from peftbench.run import checkpoint as checkpoint_module
from peftbench.run import folder as folder_module
from peftbench.runner import run_grid
from peftbench.store import Store

fault, _, nth = sys.argv[1].partition("@")
nth, seen = int(nth or 1), {"n": 0}


def reached() -> bool:
    seen["n"] += 1
    return seen["n"] == nth


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if fault == "result.json":
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("result.json") and reached():
            die()
        return real_replace(src, dst)

    folder_module.os.replace = replace
elif fault == "predictions":
    real_write = folder_module.RunFolder.write_predictions

    def write_predictions(self, predictions, references, split="test"):
        if split == "test" and reached():
            with open(self.predictions_of(split), "w", encoding="utf-8") as f:
                f.write('{"index": 0, "refer')
                f.flush()
                die()
        return real_write(self, predictions, references, split)

    folder_module.RunFolder.write_predictions = write_predictions
elif fault == "commit":
    real_record = Store.record_result

    class DiesBeforeCommit:
        def __init__(self, db):
            self.db = db

        def __getattr__(self, name):
            return getattr(self.db, name)

        def __enter__(self):
            return self.db.__enter__()

        def __exit__(self, *exc):
            die()

    def record_result(self, result, config, grid):
        if reached():
            self.db = DiesBeforeCommit(self.db)
        return real_record(self, result, config, grid)

    Store.record_result = record_result
elif fault == "checkpoint":
    real_save = checkpoint_module.save

    def save(*args, **kwargs):
        path = real_save(*args, **kwargs)
        if reached():
            die()
        return path

    checkpoint_module.save = save
else:
    sys.exit(f"unknown fault {fault!r}")

run_grid(load_grid(sys.argv[2]), in_process=True, show_progress=False, echo=lambda *a: None)
