"""One run on several processes (train.launcher -> accelerate launch, DDP; here 2 CPU processes with gloo)."""
import json
import sys

import pytest
import torch

from conftest import store_rows, toy_grid
from peftbench.config import ConfigError, expand, load_grid
from peftbench.preflight import check
from peftbench.run.batching import RankBatches
from peftbench.run.distributed import launch_command, shards
from peftbench.runner import run_grid
from peftbench.store import Store


@pytest.mark.parametrize("n,batch,world", [(100, 32, 2), (37, 8, 4), (5, 4, 3), (64, 16, 2), (1, 4, 2)])
def test_the_ranks_batches_together_are_the_single_process_batches(n, batch, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n)).tolist()
    single = [order[i:i + batch] for i in range(0, n, batch)]
    ranks = [list(RankBatches(order, batch, r, world)) for r in range(world)]
    assert all(len(b) == len(single) for b in ranks)  # every rank takes as many steps
    for k, expected in enumerate(single):
        parts = [ranks[r][k] for r in range(world)]
        assert len({len(p) for p in parts}) == 1  # equal shares: DDP's mean of means is the batch mean
        joined = [x for p in parts for x in p]
        assert set(joined) == set(expected) and len(joined) == -(-len(expected) // world) * world


def test_launcher_config_is_checked(tmp_path, toy):
    data = toy_grid(toy, tmp_path / "r", models=["tiny:llama"], methods=["lora"], batch_size=30)
    data["train"]["launcher"] = {"num_processes": 4}
    with pytest.raises(ConfigError, match=r"train.batch_size: 30 is not a multiple of launcher.num_processes \(4\)"):
        load_grid(data=data)
    data["train"]["launcher"] = {"num_procs": 2}
    with pytest.raises(ConfigError, match="train.launcher.num_procs: unknown field"):
        load_grid(data=data)
    deepspeed = tmp_path / "deepspeed.yaml"
    deepspeed.write_text("distributed_type: DEEPSPEED\nnum_processes: 2\n")
    data["train"] = {"batch_size": 16, "launcher": {"num_processes": 2, "config_file": str(deepspeed)}}
    problems = check(load_grid(data=data), read_data=False)
    assert any("distributed_type DEEPSPEED is not supported" in p and "train.launcher.fsdp: true" in p
               for p in problems), problems
    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text("distributed_type: FSDP\nnum_processes: 2\n")
    data["train"]["launcher"]["config_file"] = str(fsdp)
    assert check(load_grid(data=data), read_data=False) == []  # an FSDP config file: peftbench's FSDP2
    assert shards(load_grid(data=data).train.launcher)
    data["train"]["export_merged"] = True  # what a sharded model cannot do is refused for the file's FSDP too
    assert any(p.startswith("train.export_merged: not with launcher.fsdp") and "distributed_type FSDP" in p
               for p in check(load_grid(data=data), read_data=False))
    data["train"].pop("export_merged")
    data["train"]["launcher"]["config_file"] = str(tmp_path / "missing.yaml")
    assert any(p.startswith("train.launcher.config_file: accelerate config file") and "does not exist" in p
               for p in check(load_grid(data=data), read_data=False))


def test_launch_command(tmp_path, toy):
    data = toy_grid(toy, tmp_path / "r", models=["tiny:llama"], methods=["lora"])
    run = expand(load_grid(data=data))[0]
    assert launch_command(run, tmp_path, {}) == ([sys.executable, "-m", "peftbench.run.worker", str(tmp_path)], {})
    data["train"]["launcher"] = {"num_processes": 2, "main_process_port": 29555, "args": ["--gpu_ids", "0,1"]}
    run = expand(load_grid(data=data))[0]
    cmd, env = launch_command(run, tmp_path, {"PEFTBENCH_THREADS": "8"})
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--main_process_port") + 1] == "29555"
    assert "--multi_gpu" in cmd and cmd[-5:] == ["--gpu_ids", "0,1", "-m", "peftbench.run.worker", str(tmp_path)]
    assert env["PEFTBENCH_THREADS"] == env["OMP_NUM_THREADS"] == "4"  # each process its share of the run's cores
    cfg = tmp_path / "ddp.yaml"
    data["train"]["launcher"] = {"num_processes": 2, "config_file": str(cfg)}
    cmd, _ = launch_command(expand(load_grid(data=data))[0], tmp_path, {})
    assert cmd[cmd.index("--config_file") + 1] == str(cfg) and "--multi_gpu" not in cmd  # the file decides


def assert_same_training(one: dict, two: dict) -> None:
    """A run on several processes did what the single-process run did: the same optimizer steps, per-epoch
    train and validation losses, test loss (to float rounding) and test metrics."""
    assert two["training"]["optimizer_steps"] == one["training"]["optimizer_steps"]
    for a, b in zip(one["curves"], two["curves"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    assert two["test"]["loss"] == pytest.approx(one["test"]["loss"], abs=1e-5)
    for k, v in one["test"]["metrics"].items():
        assert two["test"]["metrics"][k] == pytest.approx(v, abs=1e-9), k


def _result(out):
    (folder,) = (out / "runs").iterdir()
    return json.loads((folder / "result.json").read_text())


def test_two_cpu_processes_give_the_single_process_run(tmp_path, toy):
    """DDP over 2 gloo processes, gradient accumulation included: the same losses and metrics as one process
    (tiny Llama and LoRA without dropout, so the only difference is float rounding), one result in the store,
    memory per rank and its maximum, throughput over both processes."""
    results = {}
    for n in (1, 2):
        data = toy_grid(toy, tmp_path / f"out{n}", models=["tiny:llama"], methods=[{"name": "lora", "lora_dropout": 0.0}],
                        epochs=2, threads=1, batch_size=16, grad_accum=2)
        if n > 1:
            data["train"]["launcher"] = {"num_processes": n}
        summary = run_grid(load_grid(data=data), show_progress=False)
        assert summary.failed == [] and len(summary.finished) == 1
        rows, curves = store_rows(tmp_path / f"out{n}")
        assert len(rows) == 1 and rows[0][1] == "ok" and list(curves.values()) == [2]
        assert len(list((tmp_path / f"out{n}" / "runs").iterdir())) == 1
        results[n] = _result(tmp_path / f"out{n}")
    one, two = results[1], results[2]
    assert_same_training(one, two)
    assert two["training"]["samples_seen"] == one["training"]["samples_seen"]  # summed over the ranks
    assert two["training"]["tokens_seen"] == one["training"]["tokens_seen"]
    assert two["test"]["samples"] == one["test"]["samples"]
    preds = [json.loads(line) for line in (next((tmp_path / "out2" / "runs").iterdir()) / "predictions.jsonl").open()]
    assert [p["index"] for p in preds] == list(range(one["test"]["samples"]))  # gathered in order, none twice
    mem = two["memory"]
    assert len(mem["per_rank"]) == 2 and mem["peak_memory_mb"] == max(r["peak_memory_mb"] for r in mem["per_rank"])
    assert two["timing"]["processes"] == 2 and two["timing"]["threads"] == 2 and one["timing"]["processes"] == 1
    assert two["provenance"]["options"]["launcher"] == {"processes": 2, "distributed_type": "MULTI_CPU",
                                                        "backend": "gloo"}
    assert one["run_id"] != two["run_id"]  # a launcher is part of what the run is (its own cell in the report)
    assert Store(tmp_path / "out2").status(two["run_id"]) == "ok"


def _weights(out) -> dict:
    from safetensors.torch import load_file

    (folder,) = (out / "runs").iterdir()
    files = sorted((folder / "weights").rglob("*.safetensors"))
    assert files, f"no weights saved in {folder / 'weights'}"
    return {f"{f.name}:{k}": v for f in files for k, v in load_file(str(f)).items()}


@pytest.mark.parametrize("method,how", [("full", "field"), ({"name": "lora", "lora_dropout": 0.0}, "field"),
                                        ({"name": "lora", "lora_dropout": 0.0}, "accelerate config file")])
def test_fsdp_on_two_cpu_processes_gives_the_single_process_run(tmp_path, toy, method, how):
    """FSDP2 over 2 gloo processes (parameters, gradients and optimizer state sharded; gradient accumulation
    included), asked for by ``launcher.fsdp`` or by an accelerate config file of distributed_type FSDP: the same
    losses, metrics and saved weights as one process, one result in the store."""
    results, weights = {}, {}
    for n in (1, 2):
        data = toy_grid(toy, tmp_path / f"out{n}", models=["tiny:llama"], methods=[method], epochs=2, threads=1,
                        batch_size=16, grad_accum=2, lr=1e-3)
        if n > 1 and how == "field":
            data["train"]["launcher"] = {"num_processes": n, "fsdp": True}
        elif n > 1:
            cfg = tmp_path / "fsdp.yaml"
            cfg.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nuse_cpu: true\n"
                           f"num_processes: {n}\nnum_machines: 1\nmachine_rank: 0\nmixed_precision: 'no'\n"
                           "fsdp_config:\n  fsdp_version: 2\n")
            data["train"]["launcher"] = {"num_processes": n, "config_file": str(cfg)}
        summary = run_grid(load_grid(data=data), show_progress=False)
        assert summary.failed == [] and len(summary.finished) == 1, summary.failed
        results[n], weights[n] = _result(tmp_path / f"out{n}"), _weights(tmp_path / f"out{n}")
    one, two = results[1], results[2]
    assert two["provenance"]["options"]["launcher"]["sharding"].startswith("fsdp2")
    assert_same_training(one, two)
    assert two["test"]["samples"] == one["test"]["samples"]  # every rank scored the whole split, once counted
    assert two["parameters"] == one["parameters"]  # counted before sharding
    assert weights[1].keys() == weights[2].keys()  # rank 0 saved the full weights, not its shard
    for k, w in weights[1].items():
        assert weights[2][k].shape == w.shape and torch.allclose(weights[2][k], w, atol=1e-5), k
    assert len(two["memory"]["per_rank"]) == 2


def test_fsdp_refuses_what_needs_whole_weights(tmp_path, toy):
    data = toy_grid(toy, tmp_path / "r", models=["tiny:llama"], methods=["lora"], export_merged=True)
    data["train"]["launcher"] = {"num_processes": 2, "fsdp": True}
    with pytest.raises(ConfigError, match=r"train.export_merged: not with launcher.fsdp"):
        load_grid(data=data)
    data["train"].pop("export_merged")
    run = expand(load_grid(data=data))[0]
    data["train"]["launcher"] = {"num_processes": 2}
    assert run.run_id != expand(load_grid(data=data))[0].run_id  # sharding is part of what the run is
    data["train"]["launcher"] = {"num_processes": 2, "fsdp": False}  # the default keeps the ids stored before
    assert expand(load_grid(data=data))[0].run_id == expand(load_grid(data={**data, "train": {
        **data["train"], "launcher": {"num_processes": 2}}}))[0].run_id


def test_a_failing_run_on_two_processes_is_recorded_once(tmp_path, toy):
    data = toy_grid(toy, tmp_path / "out", models=["tiny:llama"], methods=["lora"], epochs=1, threads=1, lr=1e9)
    data["train"]["launcher"] = {"num_processes": 2}
    summary = run_grid(load_grid(data=data), show_progress=False)
    assert summary.finished == [] and len(summary.failed) == 1
    message = summary.failed[0][1]
    assert "non-finite training loss" in message and "\n" not in message, message
    rows, _ = store_rows(tmp_path / "out")
    assert len(rows) == 1 and rows[0][1] == "failed"


def _write_error_often(path, rank, start, n):
    from peftbench.run.folder import RunFolder

    start.wait()
    for i in range(n):  # messages of different lengths: interleaved writes would leave a torn file
        RunFolder(path).write_error(f"[process {rank}] " + "x" * (i % 7 + rank * 50), "tb " * i,
                                    keep_existing=rank != 0)


def test_ranks_writing_one_error_file_at_once_leave_rank_0s_whole_message(tmp_path):
    """The CI failure this guards: both ranks of a failed run wrote error.json through one temporary name."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_write_error_often, args=(tmp_path, r, start, 300)) for r in range(3)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    error = json.loads((tmp_path / "error.json").read_text(encoding="utf-8"))
    assert error["error"].startswith("[process 0] ")  # rank 0 replaces; the others only write where none is
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error.json"]  # no temporary file left behind


def test_the_first_error_written_is_kept_for_ranks_other_than_0(tmp_path):
    from peftbench.run.folder import RunFolder

    folder = RunFolder(tmp_path)
    folder.write_error("[process 2] first", "", keep_existing=True)
    folder.write_error("[process 1] second", "", keep_existing=True)
    assert folder.read(folder.error)["error"] == "[process 2] first"
    folder.write_error("rank 0's reason", "")
    assert folder.read(folder.error)["error"] == "rank 0's reason"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error.json"]


def test_a_ray_task_asks_for_every_process_of_its_run(tmp_path, toy):
    from peftbench.executors.ray import resources

    data = toy_grid(toy, tmp_path / "r", models=["tiny:llama"], methods=["lora"])
    assert resources(expand(load_grid(data=data))[0], {"GPU": 4}) == {"num_cpus": 1, "num_gpus": 1}
    data["train"].update(launcher={"num_processes": 2}, threads=3)
    assert resources(expand(load_grid(data=data))[0], {"GPU": 4}) == {"num_cpus": 6, "num_gpus": 2}
    assert resources(expand(load_grid(data=data))[0], {}) == {"num_cpus": 6, "num_gpus": 0}
