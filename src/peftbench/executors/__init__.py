"""Where a grid's runs execute. Every executor is ``execute(state, store, todo, where)``: it runs each run of
``todo`` that ``state.claim`` lets it take, through ``run/launch.run_one`` (or ``state.execute``, which calls
it), and hands each outcome to ``state.record``; ``where`` (runner.Where) says how many at once, on which
devices, on which Ray cluster. A new executor is one module here plus one line below."""
from __future__ import annotations

import importlib

EXECUTORS = {
    "local": "peftbench.executors.local:execute",  # this machine: one run at a time, or --jobs N at once
    "ray": "peftbench.executors.ray:execute",  # one Ray task per run, on a local or remote cluster
}


def executor(name: str):
    """The ``execute`` function of the executor called ``name``."""
    if name not in EXECUTORS:
        raise ValueError(f"executor '{name}' is not one of {', '.join(EXECUTORS)}")
    module, attr = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module), attr)
