"""One run on several processes: ``train.launcher`` starts the run's worker through ``accelerate launch``
(torchrun underneath; NCCL on GPUs, gloo on CPU) and the recipe asks this module everything that differs.

* ``launch_command``: the worker's command line (plain ``python -m peftbench.run.worker`` for one process).
* ``Ranks``: this process's place among the run's processes. With one process every method is a no-op, so
  the single-process path is the plain loop. With several, accelerate's ``Accelerator`` wraps the model in
  DDP (``prepare``), back-propagates (``backward``), clips, skips gradient sync on accumulation steps
  (``no_sync``) and gathers; each rank trains on its share of every global batch (``run/batching.py``) and
  evaluates a contiguous share of each split, and every rank scores the gathered predictions, so early
  stopping decides the same everywhere. Only rank 0 writes the run's files.

With ``launcher.fsdp`` the model is sharded instead of replicated (PyTorch FSDP2: ``fully_shard`` on each
transformer block, then on the whole model, after the method is applied and before the optimizer is built):
parameters, gradients and optimizer state are split over the processes, gradients reduce-scattered. Forward
passes are then collective, so every rank evaluates whole splits (no shares to gather), the best epoch's
weights are kept as each rank's own shards, and the full weights are gathered for rank 0 to save.
An accelerate config file of distributed_type FSDP means the same (peftbench shards with FSDP2 itself, on
GPUs and CPU processes alike; the file's other launch settings still apply). DeepSpeed and Megatron-LM config
files are refused with one line: the loop keeps and saves replicated or FSDP2-sharded weights.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

ACCELERATE_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
LAUNCHED = "PEFTBENCH_LAUNCHED"  # set for workers started by launch_command (a WORLD_SIZE alone is someone else's)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(run, run_dir: Path, env: dict) -> tuple[list[str], dict]:
    """The command that executes ``run`` into ``run_dir`` and what it adds to the run's environment ``env``: the
    worker itself, or ``accelerate launch`` starting ``num_processes`` workers, each with its share of the
    cores the run was given."""
    worker = ["-m", "peftbench.run.worker", str(run_dir)]
    launcher = run.train.launcher
    if launcher is None or (launcher.num_processes == 1 and not launcher.config_file and not launcher.args):
        return [sys.executable, *worker], {}
    from ..measure import default_threads

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--quiet",
           "--num_processes", str(launcher.num_processes),
           "--main_process_port", str(launcher.main_process_port or free_port()),
           "--mixed_precision", ACCELERATE_PRECISION[run.train.precision], "--dynamo_backend", "no"]
    if launcher.config_file:
        cmd += ["--config_file", str(Path(launcher.config_file).expanduser())]
    elif not any(a.startswith("--num_machines") for a in launcher.args):
        cmd += ["--num_machines", "1"]
    if not launcher.config_file and launcher.num_processes > 1:
        cmd += ["--multi_gpu"]  # accelerate's name for its torchrun launcher; on CPU the workers join with gloo
    given = env.get("PEFTBENCH_THREADS", "")
    cores = int(given) if given.isdigit() and int(given) > 0 else default_threads()
    threads = run.train.threads or max(1, cores // launcher.num_processes)
    return [*cmd, *launcher.args, *worker], {"PEFTBENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
                                             LAUNCHED: "1"}


def sharded_config(config_file: str | None) -> str | None:
    """The distributed type of an accelerate config file where it shards the model (FSDP: peftbench's own FSDP2;
    DeepSpeed, Megatron-LM: refused); None otherwise (no file, DDP, one process)."""
    if not config_file:
        return None
    import yaml

    try:
        data = yaml.safe_load(Path(config_file).expanduser().read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None  # preflight reports a missing file; accelerate reports a broken one
    kind = str(data.get("distributed_type", "")).upper() if isinstance(data, dict) else ""
    return kind if kind in ("FSDP", "DEEPSPEED", "MEGATRON_LM") else None


def shards(launcher) -> bool:
    """Whether a run's model is sharded: ``launcher.fsdp``, or an accelerate config file of distributed_type FSDP."""
    return bool(launcher) and (launcher.fsdp or sharded_config(launcher.config_file) == "FSDP")


class Ranks:
    """This process's place among the run's processes (one, unless started by ``accelerate launch``)."""

    def __init__(self, device, train):
        self.world = int(os.environ.get("WORLD_SIZE", "1")) if os.environ.get(LAUNCHED) == "1" else 1
        self.rank, self.accelerator, self.device, self.fsdp = 0, None, device, False
        if self.world > 1:
            from accelerate import Accelerator
            from accelerate.utils import DistributedDataParallelKwargs, DistributedType

            find = bool(train.launcher and train.launcher.find_unused_parameters)
            self.fsdp = shards(train.launcher)
            if self.fsdp:  # peftbench shards the model itself (FSDP2); accelerate's own FSDP (from an FSDP config
                os.environ["ACCELERATE_USE_FSDP"] = "false"  # file) would re-type the run and wrap it again
            self.accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=ACCELERATE_PRECISION[train.precision],
                                           kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find)])
            kind = self.accelerator.distributed_type
            if kind not in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
                raise RuntimeError(f"train.launcher: accelerate chose {kind.value}; peftbench runs one run on several "
                                   "processes with DDP only (an accelerate config with distributed_type MULTI_GPU)")
            self.rank, self.device = self.accelerator.process_index, self.accelerator.device
            self.kind = kind.value

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict | None:
        """For the run's provenance."""
        if self.world == 1:
            return None
        return {"processes": self.world, "distributed_type": self.kind, "backend": self.accelerator.state.backend,
                **({"sharding": "fsdp2 (fully_shard per transformer block)"} if self.fsdp else {})}

    def first(self):
        """Rank 0 first, then the others (data preparation: rank 0 fills the features cache, the rest read it)."""
        return self.accelerator.main_process_first() if self.accelerator else contextlib.nullcontext()

    def shard(self, model, base):
        """FSDP: shard ``model`` in place over the processes (each transformer block of ``base``, the model the
        method wrapped, then the whole); build the optimizer afterwards, over the sharded parameters."""
        if not self.fsdp:
            return model
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world,))
        names = set(getattr(base, "_no_split_modules", None) or [])
        for block in [m for m in model.modules() if type(m).__name__ in names]:
            fully_shard(block, mesh=mesh)
        return fully_shard(model, mesh=mesh)

    def prepare(self, model, optimizer):
        """(the model to train through, the optimizer): DDP-wrapped where there are several processes (FSDP:
        already sharded by ``shard``)."""
        if not self.accelerator or self.fsdp:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def backward(self, loss) -> None:
        if self.accelerator and not self.fsdp:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def clip(self, params, max_norm: float) -> None:
        import torch

        if self.accelerator and not self.fsdp:
            self.accelerator.clip_grad_norm_(params, max_norm)
        else:  # (FSDP: the parameters are DTensors, and the norm is taken over every rank's shards)
            torch.nn.utils.clip_grad_norm_(params, max_norm)

    @contextlib.contextmanager
    def _fsdp_no_sync(self, model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def no_sync(self, model, sync: bool):
        """Gradient accumulation: no all-reduce on the micro-batches that do not end an optimizer step."""
        if self.accelerator and not sync:
            return self._fsdp_no_sync(model) if self.fsdp else self.accelerator.no_sync(model)
        return contextlib.nullcontext()

    @property
    def shares_splits(self) -> bool:
        """Whether each rank evaluates its own share of a split (DDP), rather than the whole split (one process;
        FSDP, whose forward passes need every rank)."""
        return self.world > 1 and not self.fsdp

    def reshard(self, model) -> None:
        """FSDP: every module back to its shard. FSDP2 keeps the root's parameters gathered after a forward pass
        (for the backward pass that usually follows); after evaluation that would leave training on the copy
        gathered under inference mode, and the best-epoch copy reading whole tensors instead of shards."""
        if self.fsdp:
            from torch.distributed.fsdp import FSDPModule

            for m in model.modules():
                if isinstance(m, FSDPModule):
                    m.reshard()

    def full_state(self, model) -> dict | None:
        """FSDP: the full weights, gathered from every rank's shards (a collective: every rank calls it; rank 0
        gets them on the CPU, the others an empty dict). Elsewhere None: the model's parameters are whole."""
        if not self.fsdp:
            return None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def share(self, n: int) -> range:
        """This rank's contiguous share of ``n`` evaluation rows (the shares, in rank order, are 0..n-1)."""
        per = -(-n // self.world)
        return range(min(n, self.rank * per), min(n, (self.rank + 1) * per))

    def gather(self, obj) -> list:
        """``obj`` from every rank, in rank order (this rank's alone where there is one)."""
        if not self.accelerator:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def sum(self, tensor):
        """Element-wise sum over ranks."""
        return self.accelerator.reduce(tensor, reduction="sum") if self.accelerator else tensor
