"""``python -m peftbench.run.guard PARENT_PID COMMAND...``: ask Linux to send this process SIGTERM when the grid
process ``PARENT_PID`` dies, then become ``COMMAND`` (exec keeps the request). A run's process (the worker, or
``accelerate launch``) is started through it, so a grid that is killed leaves no orphan writing results.

Why not ``subprocess``'s ``preexec_fn``: it runs Python between fork and exec, which is unsafe while the grid
has other threads (the claim's heartbeat, progress bars): a lock held by one of them at the fork leaves the child
stuck before exec, holding the grid's stdout and stderr open, so the grid never looks finished."""
from __future__ import annotations

import os
import signal
import sys


def die_with(parent: int) -> None:
    """SIGTERM to this process when ``parent`` exits (Linux; elsewhere nothing). Where ``parent`` is already
    gone (it died before the request was made), exit now."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:
        sys.exit(143)


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    die_with(parent)
    os.execv(command[0], command)


if __name__ == "__main__":  # pragma: no cover - replaced by the command it starts
    main(sys.argv[1:])
