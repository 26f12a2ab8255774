"""The files of one run's folder, named in one place for the runner, the worker, the recipe and the store."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..result import RunResult


def write_json(path: Path, obj, keep_existing: bool = False) -> None:
    """Write atomically: a reader sees the old file or the whole new one, never half.

    The temporary file is this process's own, so processes writing the same file at once (the ranks of a run
    on several processes) never interleave in it. ``keep_existing``: leave a file already there (the first
    writer wins).
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str, ensure_ascii=False), encoding="utf-8")
    if not keep_existing:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and fails where the file exists, unlike a test-then-replace
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    config = property(lambda self: self.path / "config.json")  # the resolved RunSpec
    result = property(lambda self: self.path / "result.json")  # every measurement (written last: the run finished)
    error = property(lambda self: self.path / "error.json")  # one-line message + traceback of a failed run
    curves = property(lambda self: self.path / "curves.json")  # per-epoch losses and validation metrics
    predictions = property(lambda self: self.path / "predictions.jsonl")  # per-example test predictions
    validation_predictions = property(lambda self: self.path / "validation_predictions.jsonl")  # best checkpoint
    weights = property(lambda self: self.path / "weights")  # what the method trained (adapter + head)
    merged = property(lambda self: self.path / "merged")  # train.export_merged: the merged checkpoint
    checkpoint = property(lambda self: self.path / "checkpoint")  # train.checkpoint_every: the last saved epoch
    trackers = property(lambda self: self.path / "trackers")  # train.trackers: their files, one folder each

    def reset(self, keep_checkpoint: bool = False) -> None:
        """Start clean: leftovers of an interrupted attempt are removed, but for its checkpoint and its trackers'
        records where ``keep_checkpoint`` (the run will go on from it)."""
        if self.path.exists():
            for entry in self.path.iterdir():
                if keep_checkpoint and entry in (self.checkpoint, self.trackers):
                    continue
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        self.path.mkdir(parents=True, exist_ok=True)

    def remove_checkpoint(self) -> None:
        shutil.rmtree(self.checkpoint, ignore_errors=True)

    def write_config(self, config: dict) -> None:
        write_json(self.config, config)

    def write_result(self, result: RunResult) -> None:
        write_json(self.curves, result.curves)
        write_json(self.result, result.to_json())

    def write_error(self, message: str, traceback: str, position: dict | None = None,
                    keep_existing: bool = False) -> None:
        write_json(self.error, {"error": message[:700], "position": position, "traceback": traceback},
                   keep_existing=keep_existing)

    def predictions_of(self, split: str) -> Path:
        return self.predictions if split == "test" else self.validation_predictions

    def write_predictions(self, predictions: list, references: list, split: str = "test") -> None:
        with open(self.predictions_of(split), "w", encoding="utf-8") as f:
            for i, (p, r) in enumerate(zip(predictions, references)):
                f.write(json.dumps({"index": i, "reference": r, **p}, ensure_ascii=False) + "\n")

    def read_predictions(self, split: str = "test") -> list[dict]:
        with open(self.predictions_of(split), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def read(self, which: Path) -> dict | None:
        return json.loads(which.read_text(encoding="utf-8")) if which.exists() else None

    def finished(self) -> bool:
        return self.result.exists() and self.config.exists()
