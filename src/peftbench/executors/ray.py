"""The Ray executor: one Ray task per run, with the CPUs / GPUs the run asks for, on a local or remote Ray
cluster; the grid's process claims each run, waits for the tasks and records every result in the one store.

Run folders are written by the node that runs them: a cluster needs the results folder on a shared file
system (the usual set-up for a shared results disk). Ray is an optional extra: ``pip install -e ".[ray]"``.
"""
from __future__ import annotations

from ..config import RunSpec
from ..errors import first_line


def resources(run: RunSpec, cluster: dict) -> dict:
    """What one run asks Ray for: its threads as CPUs (default 1), a GPU where it wants CUDA and the cluster has
    one; a run on several processes (``train.launcher``) asks for that many of each."""
    n = run.train.launcher.num_processes if run.train.launcher else 1
    gpus = 1 if run.train.device.startswith("cuda") or (run.train.device == "auto" and cluster.get("GPU", 0) >= 1) \
        else 0
    return {"num_cpus": (run.train.threads or 1) * n, "num_gpus": gpus * n}


def _run_remote(run_json: str, run_dir: str, threads: int):  # executed in a Ray worker
    from pathlib import Path

    from ..config import RunSpec
    from ..run.launch import run_one

    run = RunSpec.model_validate_json(run_json)
    return run_one(run, Path(run_dir), show_progress=False, env={"PEFTBENCH_THREADS": str(threads)})


def execute(state, store, todo: list[RunSpec], where) -> None:
    """Submit every run the store lets this runner claim (to the cluster at ``where.address``, or a local Ray
    instance); record results as they come back."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=where.address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(_run_remote)
        cluster = ray.cluster_resources()
        in_flight = {}
        for run in todo:
            if not state.claim(store, run):
                continue
            need = resources(run, cluster)
            ref = remote.options(**need, max_retries=0).remote(run.model_dump_json(), str(store.run_dir(run.slug)),
                                                              need["num_cpus"])
            in_flight[ref] = run
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=30)
            for ref in done:
                run = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the task itself died (node lost, worker killed)
                    outcome = (None, f"Ray task failed: {first_line(exc, 300)}", "failed")
                state.record(store, run, *outcome)
            for run in in_flight.values():
                store.heartbeat(run.run_id)
    except KeyboardInterrupt:
        for ref, run in in_flight.items():
            ray.cancel(ref, force=True)
            state.interrupted(store, run)
        raise
    finally:
        if started_here:
            ray.shutdown()
