"""Launching one run: its folder reset, its config written, its process started (the worker, or ``accelerate
launch`` starting N of them), and what it left read back. Every executor (one at a time, ``--jobs``, Ray) calls
``run_one``; ``slot_env`` is what one of several parallel slots gives its runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ..config import RunSpec
from ..result import RunResult
from .folder import RunFolder


def run_one(run: RunSpec, run_dir: Path, in_process: bool = False, show_progress: bool = True,
            env: dict | None = None) -> tuple[dict | None, str | None, str]:
    """Execute one run into ``run_dir``. Returns (result, error message, status). ``env``: extra environment
    for the run's process (its device, its thread count)."""
    folder = RunFolder(run_dir)
    folder.reset(keep_checkpoint=resumable(folder, run))
    folder.write_config(run.model_dump(mode="json"))
    if in_process:
        from .worker import main as worker_main

        if run.train.launcher and run.train.launcher.num_processes > 1:
            raise ValueError("train.launcher starts several processes; drop in_process")

        code = worker_main([str(folder.path)])
    else:
        from .distributed import launch_command

        full_env = dict(os.environ, PEFTBENCH_PROGRESS="1" if show_progress else "0", **(env or {}))
        command, launch_env = launch_command(run, folder.path, full_env)  # the worker, or accelerate launch (N)
        full_env.update(launch_env)
        # through run.guard: the run's process gets SIGTERM if the grid process dies (no orphans writing results)
        guarded = [sys.executable, "-m", "peftbench.run.guard", str(os.getpid()), *command]
        proc = subprocess.run(guarded, env=full_env)
        code = proc.returncode
    if folder.result.exists():
        return RunResult.load(folder.read(folder.result)), None, "ok"
    if folder.error.exists():
        error = folder.read(folder.error)["error"]
        return None, error, "interrupted" if error.startswith("KeyboardInterrupt") else "failed"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (likely out of memory)" if name == "SIGKILL" else ""
        return None, f"run process killed by {name}{hint}", "killed"
    return None, f"run process exited with code {code} and wrote no result", "failed"


def resumable(folder: RunFolder, run: RunSpec) -> bool:
    """Whether ``folder`` holds a checkpoint this run may go on from: it asks for checkpoints and the folder's
    config is the same run (the same run id)."""
    if not (run.train.checkpoint_every and folder.checkpoint.is_dir() and folder.config.exists()):
        return False
    try:
        return RunSpec.model_validate(folder.read(folder.config)).run_id == run.run_id
    except (ValueError, OSError):  # an unreadable or outdated config: start over
        return False


def slot_env(slot: int, jobs: int, devices: list[str] | None) -> dict:
    """What one of ``jobs`` parallel slots gives its runs: a GPU each (``devices``), or a share of the cores."""
    if devices:
        return {"CUDA_VISIBLE_DEVICES": devices[slot % len(devices)]}
    if jobs > 1:
        from ..measure import default_threads

        return {"PEFTBENCH_THREADS": str(max(1, default_threads() // jobs))}
    return {}
