"""How a run fails: ``RunFailed`` (a reason in one line), where it was (``Position``, carried on the exception
that ended it), and a hint where it ran out of memory. No torch import: the worker reads these whatever failed."""
from __future__ import annotations

from dataclasses import dataclass


class RunFailed(RuntimeError):
    """A run that cannot give a result, with the reason in one line."""


@dataclass
class Position:
    """Where the run is: a failure is reported with its phase, epoch and last optimizer step."""

    phase: str = "starting"
    epoch: int = 0
    step: int = 0

    def __str__(self) -> str:
        if self.phase in ("starting", "loading data and model"):
            return self.phase
        return f"{self.phase}, epoch {self.epoch}, after optimizer step {self.step}"


def position_of(exc: BaseException) -> Position | None:
    """Where the run was when ``exc`` ended it (``execute`` puts its position on the exception it lets out)."""
    return getattr(exc, "peftbench_position", None)


def out_of_memory_hint(exc: BaseException) -> str:
    """A hint for the two ways torch reports running out of memory (CUDA and the CPU allocator)."""
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text.lower():
        return ("; out of memory: lower train.batch_size (keeping the effective batch with train.grad_accum), "
                "train.max_length, or use train.precision=bf16")
    return ""
