"""What a run measures about itself: parameters, peak memory, provenance."""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("peftbench", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn", "tokenizers")


def count_parameters(model) -> dict:
    """Trainable / non-trainable / total, counting each tensor once (tied weights are shared)."""
    seen, trainable, frozen = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        if p.requires_grad:
            trainable += n
        else:
            frozen += n
    total = trainable + frozen
    return {"trainable": trainable, "non_trainable": frozen, "total": total,
            "trainable_pct": 100.0 * trainable / total if total else 0.0}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far. Linux: the address space's high-water mark (VmHWM), not
    getrusage's ru_maxrss, which keeps the high-water mark of the process image before exec — a run started
    from a large parent (a test runner, a big grid process) would report the parent's size (tested)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # (Linux KiB, macOS bytes)
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return float("nan")


class MemoryMeter:
    """Peak memory of the run: CPU peak RSS of this process, and on CUDA peak allocated / reserved
    with the baseline (before the model was loaded) subtracted."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rss_baseline = current_rss_mb()
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.synchronize(device)
            # cached blocks of an earlier run in this process (in-process grids) would otherwise sit in the
            # reserved baseline: the run's allocations served from them made reserved grow less than allocated
            # (seen on an H200: allocated +2.8 MB, reserved +2.0 MB)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            self.alloc_baseline = torch.cuda.memory_allocated(device)
            self.reserved_baseline = torch.cuda.memory_reserved(device)

    def read(self) -> dict:
        out = {"peak_rss_mb": round(peak_rss_mb(), 1), "rss_baseline_mb": round(self.rss_baseline, 1),
               "peak_rss_delta_mb": round(peak_rss_mb() - self.rss_baseline, 1)}
        if self.cuda:
            torch.cuda.synchronize(self.device)
            out["cuda_peak_allocated_mb"] = round((torch.cuda.max_memory_allocated(self.device) - self.alloc_baseline) / 2**20, 1)
            out["cuda_peak_reserved_mb"] = round((torch.cuda.max_memory_reserved(self.device) - self.reserved_baseline) / 2**20, 1)
        # the headline figure: GPU memory where the run used a GPU, else the process's peak RSS
        out["peak_memory_mb"] = out.get("cuda_peak_allocated_mb", out["peak_rss_mb"])
        out["peak_memory_kind"] = "cuda_allocated" if self.cuda else "cpu_rss"
        return out


PEAKS = ("peak_rss_mb", "peak_rss_delta_mb", "cuda_peak_allocated_mb", "cuda_peak_reserved_mb", "peak_memory_mb")


def merge_ranks(readings: list[dict]) -> dict:
    """One run on several processes (``train.launcher``): every rank's reading under ``per_rank`` and, as the
    run's figures, the largest of each peak (what one device must hold)."""
    out = {**readings[0], "per_rank": readings, "peak_memory_scope": f"max over {len(readings)} processes"}
    for key in PEAKS:
        if key in out:
            out[key] = max(r[key] for r in readings)
    return out


# a CPU run whose process used less than this share of its threads' time was slowed by other load
CONTENDED_SHARE = 0.7


class Stopwatch:
    """Wall time and this process's CPU time (all threads) of repeated sections, and the machine's 1-minute
    load average sampled at the end of each."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.loads: list[float] = []

    @contextmanager
    def section(self):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu
            self.loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))


def contention(train: Stopwatch, threads: int, device) -> dict:
    """How much of the CPU the run got while training: CPU seconds over wall seconds (cores in use on average)
    against the threads it ran with. On CPU a share below ``CONTENDED_SHARE`` of the threads marks the run
    *contended*: its times and throughputs are not comparable with a clean run's. GPU runs are not judged
    by CPU share (their CPU waits on the device)."""
    share = train.cpu / train.wall if train.wall else None
    out = {"threads": threads, "train_cpu_seconds": round(train.cpu, 3), "cpu_share": round(share, 3) if share else None,
           "cpu_share_per_thread": round(share / threads, 3) if share else None, "cores": _cpu_count(),
           "load_mean": round(sum(train.loads) / len(train.loads), 2) if train.loads else None,
           "load_max": round(max(train.loads), 2) if train.loads else None}
    out["contended"] = bool(device.type == "cpu" and share is not None and share < CONTENDED_SHARE * threads)
    if out["contended"]:
        out["reason"] = (f"the process used {share:.2f} of its {threads} threads' time while training (below "
                         f"{CONTENDED_SHARE:.0%}); machine load up to {out['load_max']} on {out['cores']} cores")
    return out


def default_threads() -> int:
    """The cores this process may use: one run at a time gets them all; a run started by ``--jobs N`` gets its
    share (``PEFTBENCH_THREADS``, set by the runner)."""
    share = os.environ.get("PEFTBENCH_THREADS")
    return int(share) if share and share.isdigit() and int(share) > 0 else (_cpu_count() or 1)


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or None
        if commit:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def provenance(device: torch.device) -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    hw = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor() or None,
          "cpu_count": _cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    try:
        import psutil

        hw["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        hw.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return {"python": platform.python_version(), "versions": versions, "git_commit": _git_commit(), "hardware": hw}


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count()
