"""Entry point of one run's own process: ``python -m peftbench.worker RUN_DIR``.

Reads ``RUN_DIR/config.json`` (a resolved RunSpec), executes it and writes ``result.json``
atomically; on failure writes ``error.json`` (one-line message + traceback) and exits 1.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def quiet_libraries() -> None:
    """Library chatter (load reports, per-map progress bars) would bury the run's own progress bar."""
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft calls a deprecated alias
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def main(argv=None) -> int:
    run_dir = Path((argv or sys.argv[1:])[0])
    from .config import RunSpec

    quiet_libraries()
    run = RunSpec.model_validate_json((run_dir / "config.json").read_text(encoding="utf-8"))
    try:
        from .train import execute

        result = execute(run, run_dir, show_progress=os.environ.get("PEFTBENCH_PROGRESS", "1") == "1")
    except Exception as exc:  # the grid records the message; the traceback stays in the run folder
        msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        write_json(run_dir / "error.json", {"error": msg[:500], "traceback": traceback.format_exc()})
        print(f"run {run.slug} failed: {msg[:500]}", file=sys.stderr)
        return 1
    write_json(run_dir / "curves.json", result["curves"])
    write_json(run_dir / "result.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
