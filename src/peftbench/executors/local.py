"""The local executor: this machine runs the grid's runs one at a time (each gets every core), or ``jobs`` at
once, each in its own process on its share of the cores (or, with ``devices``, one run per GPU)."""
from __future__ import annotations

import queue
import threading

from ..run.launch import slot_env
from ..store import Store


def execute(state, store: Store, todo: list, where) -> None:
    """Run every run of ``todo`` the store lets this runner claim (``state``: the grid's claim / run / record)."""
    if where.jobs == 1:
        for run in todo:
            state.executing(run)
            state.execute(store, run, slot_env(0, 1, where.devices))
    else:
        _parallel(state, store.root, todo, where.jobs, where.devices)


def _parallel(state, root, todo: list, jobs: int, devices: list[str] | None) -> None:
    """``jobs`` threads, each taking the next run and running it in its own process; Ctrl-C stops them all."""
    pending: queue.Queue = queue.Queue()
    for run in todo:
        pending.put(run)
    errors: list[BaseException] = []
    stop = threading.Event()

    def slot(i: int):
        store = Store(root, check=False)
        try:
            while not stop.is_set():
                try:
                    run = pending.get_nowait()
                except queue.Empty:
                    return
                state.execute(store, run, slot_env(i, jobs, devices))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()
        finally:
            store.close()

    threads = [threading.Thread(target=slot, args=(i,), daemon=True) for i in range(jobs)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    except KeyboardInterrupt:  # the runs' processes got the signal too; their slots record them as interrupted
        stop.set()
        for t in threads:
            t.join(timeout=60)
        raise
    if errors:
        raise errors[0]
