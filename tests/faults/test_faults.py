"""Faults on purpose: the runner killed mid-run, mid-write and mid-commit, Ctrl-C, runs that raise (out of memory,
NaN loss, a library error), two runners on one store, a damaged store, determinism.  After each: nothing that had
finished is lost or redone, nothing is stored twice, and the grid can be run again to completion."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import store_rows, toy_grid
from peftbench.cli import main
from peftbench.config import load_grid
from peftbench.runner import run_grid
from peftbench.store import Store

CHAOS = Path(__file__).with_name("chaos.py")


def _complete(out: Path, n: int) -> dict:
    """The store holds n finished runs, each once, each with one curve point per epoch run; returns run_id -> updated."""
    rows, curves = store_rows(out)
    assert len(rows) == n == len({r[0] for r in rows}) and {r[1] for r in rows} == {"ok"}, [r[:2] for r in rows]
    for run_id, _, result, *_ in rows:
        assert curves[run_id] == json.loads(result)["training"]["epochs_run"]
    db = sqlite3.connect(out / "peftbench.sqlite")
    assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim released
    db.close()
    return {r[0]: r[3] for r in rows}


def _grid_file(tmp_path, toy, out, **kw) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(toy_grid(toy, out, **kw)))
    return path


@pytest.mark.parametrize("fault", ["result.json", "predictions", "commit"])
def test_a_kill_during_a_write_leaves_no_half_result_and_a_rerun_completes_the_grid(toy, tmp_path, fault):
    out = tmp_path / "results"
    grid = _grid_file(tmp_path, toy, out, models=["tiny:bert"], methods=["full", "lora", "ia3"], epochs=1, threads=1)
    proc = subprocess.run([sys.executable, str(CHAOS), f"{fault}@2", str(grid)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    store = Store(out)
    finished = [r.slug for r in store.results()]
    claims = store.db.execute("SELECT pid FROM claims").fetchall()
    store.close()
    assert len(finished) == 1  # the first run; the second was being written when the process died
    assert len(claims) == 1  # the dead runner's claim on the second run (taken over below: its pid is gone)
    second = [d for d in (out / "runs").iterdir() if d.name not in finished]
    assert len(second) == 1
    folder = second[0]
    kept = json.loads((folder / "result.json").read_text()) if fault == "commit" else None
    if fault == "result.json":
        assert list(folder.glob("result.json.*.tmp")) and not (folder / "result.json").exists()
    elif fault == "predictions":
        assert not (folder / "result.json").exists()
    before = {r[0]: r[3] for r in store_rows(out)[0]}
    assert main(["run", str(grid), "--quiet", "--no-report", "--in-process"]) == 0
    after = _complete(out, 3)
    assert all(after[k] == v for k, v in before.items())  # the finished run was not redone
    redone = json.loads((folder / "result.json").read_text())
    assert not list(folder.glob("result.json.*.tmp"))
    if fault == "commit":  # its folder had finished: recovered from it, not trained again
        assert redone["provenance"]["finished"] == kept["provenance"]["finished"]
    else:
        assert sum(1 for _ in open(folder / "predictions.jsonl")) == redone["test"]["samples"]


class Fault:
    """Makes the first run of an in-process grid fail at a chosen call; later runs are untouched."""

    def __init__(self, at: int, make):
        self.at, self.make, self.calls, self.fired = at, make, 0, False

    def __call__(self, value=None):
        if self.fired:
            return value
        self.calls += 1
        if self.calls == self.at:
            self.fired = True
            return self.make(value)
        return value


def _raise(exc):
    def make(_):
        raise exc
    return make


@pytest.mark.parametrize("kind", ["nan", "inf", "oom", "library"])
def test_a_run_that_raises_is_recorded_with_the_reason_and_the_last_step_and_the_grid_goes_on(toy, tmp_path,
                                                                                            monkeypatch, kind):
    from peftbench.tasks.classification import Classification

    real_loss, real_linear = Classification.loss, torch.nn.functional.linear
    if kind in ("nan", "inf", "oom"):  # the third training batch: two optimizer steps were taken before it
        make = (_raise(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) if kind == "oom"
                else (lambda loss: loss * float(kind)))
        fault = Fault(3, make)
        monkeypatch.setattr(Classification, "loss", lambda self, *a: fault(real_loss(self, *a)))
    else:  # deep inside torch, during the first validation pass
        fault = Fault(1, _raise(RuntimeError("mat1 and mat2 shapes cannot be multiplied (16x32 and 64x2)")))

        def linear(*a, **kw):
            return real_linear(*a, **kw) if torch.is_grad_enabled() else fault(real_linear(*a, **kw))
        monkeypatch.setattr(torch.nn.functional, "linear", linear)
    out = tmp_path / "results"
    summary = run_grid(load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora", "full"], epochs=1,
                                               threads=1)), in_process=True, show_progress=False)
    assert len(summary.failed) == 1 and len(summary.finished) == 1  # the grid went on
    slug, error = summary.failed[0]
    expected = {"nan": r"FloatingPointError: non-finite training loss \(nan\).* \[training, epoch 1, after optimizer step 2\]",
                "inf": r"FloatingPointError: non-finite training loss \(inf\).* \[training, epoch 1, after optimizer step 2\]",
                "oom": r"OutOfMemoryError: CUDA out of memory.*; out of memory: lower train.batch_size.* "
                       r"\[training, epoch 1, after optimizer step 2\]",
                "library": r"RuntimeError: mat1 and mat2 shapes cannot be multiplied \(16x32 and 64x2\) "
                           r"\[evaluating validation, epoch 1, after optimizer step \d+\]"}[kind]
    assert re.fullmatch(expected, error), error
    store = Store(out)
    assert store.failures() == [(slug, "failed", error)]
    store.close()
    saved = json.loads((out / "runs" / slug / "error.json").read_text())
    assert saved["position"]["epoch"] == 1 and "Traceback" in saved["traceback"]
    if kind != "library":
        assert saved["position"] == {"phase": "training", "epoch": 1, "step": 2}  # stopped within the step


def test_the_same_config_and_seed_give_identical_results_on_cpu(toy, tmp_path):
    results = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        run_grid(load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=2, threads=1,
                                         epoch_fraction=0.5)), in_process=True, show_progress=False)
        [res] = Store(out).results()
        results.append((res, (out / "runs" / res.slug / "predictions.jsonl").read_bytes()))
    (a, pa), (b, pb) = results
    assert a.test.metrics == b.test.metrics and a.test.loss == b.test.loss
    assert [c["train_loss"] for c in a.curves] == [c["train_loss"] for c in b.curves]
    assert pa == pb


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_a_run_killed_after_an_epoch_resumes_from_its_checkpoint_with_the_same_metrics(toy, tmp_path, method):
    """train.checkpoint_every: epoch. SIGKILL after epoch 1 of 3 is saved; running the grid again goes on from
    epoch 2 and ends with the test metrics, losses, curves and predictions of an uninterrupted run (dropout,
    the epoch sampler, the optimizer, the schedule and AdaLoRA's importance scores all put back); the checkpoint
    is removed once the run has finished."""
    settings = dict(models=["tiny:bert"], methods=[method], epochs=3, threads=1, epoch_fraction=0.7,
                    checkpoint_every="epoch")
    clean = tmp_path / "clean"
    run_grid(load_grid(data=toy_grid(toy, clean, **settings)), in_process=True, show_progress=False)
    [expected] = Store(clean).results()
    assert expected.training.resumed_after is None

    out = tmp_path / "results"
    grid = _grid_file(tmp_path, toy, out, **settings)
    proc = subprocess.run([sys.executable, str(CHAOS), "checkpoint@1", str(grid)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    [folder] = (out / "runs").iterdir()
    assert (folder / "checkpoint" / "state.pt").exists() and not (folder / "result.json").exists()
    assert main(["run", str(grid), "--quiet", "--no-report", "--in-process"]) == 0
    [resumed] = Store(out).results()
    assert resumed.training.resumed_after == [1]
    assert resumed.test.metrics == expected.test.metrics and resumed.test.loss == expected.test.loss
    assert [c["train_loss"] for c in resumed.curves] == [c["train_loss"] for c in expected.curves]
    assert [c["val_metrics"] for c in resumed.curves] == [c["val_metrics"] for c in expected.curves]
    assert resumed.training.optimizer_steps == expected.training.optimizer_steps
    assert resumed.training.model_extra["samples_seen"] == expected.training.model_extra["samples_seen"]
    assert (folder / "predictions.jsonl").read_bytes() == (clean / "runs" / folder.name / "predictions.jsonl").read_bytes()
    assert not (folder / "checkpoint").exists()  # removed once the run had written its result


def test_a_checkpoint_of_another_config_is_not_resumed_from_and_keep_checkpoints_keeps_it(toy, tmp_path):
    from peftbench.run.launch import resumable
    from peftbench.run.folder import RunFolder
    from peftbench.config import expand

    out = tmp_path / "results"
    grid = load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=2, threads=1,
                                   checkpoint_every="epoch", keep_checkpoints=True))
    run_grid(grid, in_process=True, show_progress=False)
    [run] = expand(grid)
    folder = RunFolder(out / "runs" / run.slug)
    assert (folder.checkpoint / "state.pt").exists()  # kept
    assert resumable(folder, run)
    other = expand(load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=3, threads=1,
                                           checkpoint_every="epoch")))[0]
    assert not resumable(folder, other)  # another run id
    plain = expand(load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=2, threads=1)))[0]
    assert plain.run_id == run.run_id and not resumable(folder, plain)  # checkpoints not asked for: start over


def test_failed_run_is_recorded_and_the_grid_goes_on(toy, tmp_path):
    out = tmp_path / "results"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=["lora"], epochs=1)
    data["tasks"].append({"name": "broken", "data": {"source": str(toy), "text": "nope"}})
    summary = run_grid(load_grid(data=data), show_progress=False)
    assert len(summary.finished) == 1 and len(summary.failed) == 1
    assert "column 'nope' not in the data" in summary.failed[0][1]
    rows, _ = store_rows(out)
    assert sorted(r[1] for r in rows) == ["failed", "ok"]



def test_kill_mid_grid_then_resume_redoes_no_finished_run(toy, tmp_path):
    out = tmp_path / "results"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, out, models=["tiny:bert", "tiny:gpt2"], methods=["full", "lora"], epochs=3)))
    cmd = [sys.executable, "-m", "peftbench.cli", "run", str(grid_file), "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        rows, _ = (store_rows(out) if (out / "peftbench.sqlite").exists() else ([], {}))
        if len([r for r in rows if r[1] == "ok"]) >= 1:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: grid and the run in flight
    proc.wait()
    before = {r[0]: r[3] for r in store_rows(out)[0] if r[1] == "ok"}
    assert 1 <= len(before) < 4
    assert main(["run", str(grid_file), "--quiet", "--no-report"]) == 0
    after = {r[0]: (r[1], r[3]) for r in store_rows(out)[0]}
    assert len(after) == 4 and all(s == "ok" for s, _ in after.values())
    for run_id, updated in before.items():
        assert after[run_id][1] == updated  # not redone



def test_ctrl_c_prints_one_line_marks_the_run_interrupted_and_reports_what_finished(toy, tmp_path):
    out = tmp_path / "results"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, out, models=["tiny:bert"], methods=["lora", "full"], epochs=500,
                                                 threads=1)))
    cmd = [sys.executable, "-m", "peftbench.cli", "run", str(grid_file), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any((out / "runs").glob("*lora*/config.json")):
        time.sleep(0.3)
    time.sleep(3)  # inside the first run's training (500 epochs: far from its end)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the grid and the run's process
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "peftbench: interrupted;" in err
    assert len([line for line in err.splitlines() if "interrupt" in line.lower()]) <= 3, err
    rows, _ = store_rows(out)
    assert [r[1] for r in rows] == ["interrupted"]  # the run in flight; the next never started
    assert (out / "report.md").exists()  # the report of what finished (nothing here) is rendered



def test_two_runners_on_one_store_split_the_grid_without_duplicate_work(toy, tmp_path):
    out = tmp_path / "results"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(toy_grid(toy, out, models=["tiny:bert"], methods=["full", "lora", "dora", "ia3"],
                                                 epochs=4, threads=1)))
    cmd = [sys.executable, "-m", "peftbench.cli", "run", str(grid_file), "--quiet", "--no-report"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outputs]
    done = [line.split()[1].rstrip(":") for o, _ in outputs for line in o.splitlines() if line.startswith("done ")]
    assert len(done) == len(set(done)) == 4  # every run trained exactly once, by one of the two
    rows, _ = store_rows(out)
    assert len(rows) == 4 and {r[1] for r in rows} == {"ok"}
    db = sqlite3.connect(out / "peftbench.sqlite")
    assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim released
    db.close()



def test_a_claim_of_a_dead_runner_is_taken_over(tmp_path):
    import socket

    from peftbench.store import Store

    store = Store(tmp_path)
    with store.db:
        store.db.execute("INSERT INTO claims VALUES (?,?,?,?,?)", ("r1", socket.gethostname(), 2 ** 22 + 12345, 0, 0))
        store.db.execute("INSERT INTO claims VALUES (?,?,?,?,?)", ("r2", "other-host", 1, time.time(), time.time()))
        store.db.execute("INSERT INTO claims VALUES (?,?,?,?,?)", ("r3", "other-host", 1, 0, 0))
    assert store.claim("r1")  # its pid is gone
    assert not store.claim("r2")  # another host, fresh heartbeat
    assert store.claim("r3")  # another host, stale
    store.release("r1")
    assert store.db.execute("SELECT run_id FROM claims ORDER BY run_id").fetchall() == [("r2",), ("r3",)]
    store.close()



@pytest.mark.parametrize("released_after", [0.5, None])
def test_a_store_locked_by_another_process_is_waited_for_then_named_busy_not_damaged(tmp_path, monkeypatch,
                                                                                      released_after):
    """Opening waits out a lock (two runners creating one store at once; a fixed 50 retries gave up after 5 s,
    short on a machine busy writing to disk); a lock that outlasts the wait is reported as busy, not as damage
    with advice to repair."""
    import threading

    from peftbench.store import Store, StoreError

    holder = sqlite3.connect(tmp_path / "peftbench.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # a rollback-journal database mid-write: nobody else can even read it
    holder.execute("CREATE TABLE other(x)")
    monkeypatch.setattr(Store, "LOCK_WAIT_SECONDS", 1.5)
    if released_after:
        threading.Timer(released_after, lambda: holder.execute("COMMIT")).start()
        store = Store(tmp_path)
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal" and store.results() == []
        store.close()
    else:
        with pytest.raises(StoreError, match=r"stayed locked for 1.5 s .*another process holds it") as err:
            Store(tmp_path)
        assert "repair" not in str(err.value) and "\n" not in str(err.value)
        holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.parametrize("damage", ["not a database", "a page overwritten", "truncated"])
def test_a_damaged_store_gets_one_line_and_repair_rebuilds_it_from_the_run_folders(toy, tmp_path, capsys, damage):
    out = tmp_path / "results"
    run_grid(load_grid(data=toy_grid(toy, out, models=["tiny:bert"], methods=["lora", "full"], epochs=1)),
             in_process=True, show_progress=False)
    for side in ("peftbench.sqlite-wal", "peftbench.sqlite-shm"):
        if (out / side).exists():
            (out / side).unlink()
    db = out / "peftbench.sqlite"
    if damage == "not a database":
        db.write_bytes(b"this is not a database" * 100)
    elif damage == "a page overwritten":  # the schema page is intact: the store opens, the runs' pages do not read
        data = bytearray(db.read_bytes())
        data[2 * 4096:3 * 4096] = b"\xff" * 4096
        db.write_bytes(bytes(data))
    else:
        db.write_bytes(db.read_bytes()[:6000])
    capsys.readouterr()  # the runs' own progress output
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is damaged" in err and f"peftbench repair {out}" in err
    assert main(["repair", str(out)]) == 0
    assert "2 finished run(s) recorded" in capsys.readouterr().out
    assert list(out.glob("peftbench.sqlite.damaged-*"))  # kept aside, not deleted
    rows, _ = store_rows(out)
    assert sorted(r[1] for r in rows) == ["ok", "ok"]
    assert main(["report", str(out)]) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_run_process_started_through_the_guard_dies_with_the_grid_process(tmp_path):
    """The grid starts each run's process through run.guard (not preexec_fn, unsafe beside the grid's threads):
    when the grid process is killed, the run's process gets SIGTERM; a guard whose parent is already gone exits."""
    pid_file = tmp_path / "child.pid"
    (tmp_path / "run.py").write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                     "time.sleep(60)\n")
    (tmp_path / "grid.py").write_text(
        "import os, subprocess, sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # a thread, as the grid has\n"
        f"subprocess.Popen([sys.executable, '-m', 'peftbench.run.guard', str(os.getpid()), sys.executable, "
        f"{str(tmp_path / 'run.py')!r}])\n"
        "time.sleep(60)\n")
    grid = subprocess.Popen([sys.executable, str(tmp_path / "grid.py")])
    deadline = time.time() + 30
    while time.time() < deadline and not (pid_file.exists() and pid_file.read_text()):
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(child, 0)  # alive, exec'd into the command (the guard's own pid)
    grid.kill()
    grid.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if open(f"/proc/{child}/stat").read().split()[2] == "Z":  # a zombie: dead, waiting for init to reap it
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the run's process outlived the grid process")
    orphan = subprocess.run([sys.executable, "-m", "peftbench.run.guard", "1", sys.executable, "-c", "print('ran')"],
                            capture_output=True, text=True, timeout=30)
    assert orphan.returncode == 143 and "ran" not in orphan.stdout  # its parent is not pid 1: exits unstarted
