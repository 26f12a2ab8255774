"""Entry point of one run's own process: ``python -m peftbench.run.worker RUN_DIR``.

Reads the run folder's ``config.json`` (a resolved RunSpec), executes it and writes ``result.json``
atomically; on failure writes ``error.json`` (one-line message + traceback) and exits 1.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from ..errors import first_line
from .failure import out_of_memory_hint, position_of
from .folder import RunFolder


def quiet_libraries() -> None:
    """Library chatter (load reports, per-map progress bars) would bury the run's own progress bar."""
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft calls a deprecated alias
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def main(argv=None) -> int:
    folder = RunFolder(Path((argv or sys.argv[1:])[0]))
    from ..config import RunSpec

    quiet_libraries()
    run = RunSpec.model_validate_json(folder.config.read_text(encoding="utf-8"))
    rank = int(os.environ.get("RANK", "0"))  # train.launcher: accelerate launch starts several workers
    try:
        from .recipe import execute

        result = execute(run, folder.path, show_progress=os.environ.get("PEFTBENCH_PROGRESS", "1") == "1")
    except KeyboardInterrupt:  # Ctrl-C reaches the run's process too: one line, not a traceback
        if rank == 0:
            folder.write_error("KeyboardInterrupt: interrupted by the user", "")
            print(f"run {run.slug} interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the grid records the message; the traceback stays in the run folder
        first = first_line(exc, 300, empty="")
        hint, where = out_of_memory_hint(exc), position_of(exc)
        msg = (f"[process {rank}] " if rank else "") + f"{type(exc).__name__}: {first}{hint}" + \
            (f" [{where}]" if where else "")
        # several processes: rank 0's reason, else the first one to fail (the others keep what is there)
        folder.write_error(msg, traceback.format_exc(), position=vars(where).copy() if where else None,
                           keep_existing=rank != 0)
        print(f"run {run.slug} failed: {msg[:500]}", file=sys.stderr)
        return 1
    if result is not None:  # None: a rank other than 0 of a run on several processes (rank 0 writes)
        folder.write_result(result)
        if not run.train.keep_checkpoints:
            folder.remove_checkpoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
