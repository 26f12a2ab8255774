"""Check ``peftbench plan --target`` (footprint.py) against what one training step really allocates.

    python bench/footprint_check.py [grid.yaml] [--set KEY=VALUE ...]

For each (model, method, task) of the grid (default bench/plan_grid.yaml) and a few training settings, the
prediction that ``plan --target`` makes for a GPU (weights, gradients, optimizer state, activations) is compared
with the peak of the memory PyTorch's tensors hold during one real training step (forward, backward, fused AdamW
step), measured on CPU by ``torch.distributed._tools.mem_tracker.MemTracker`` (it counts every tensor storage
the step allocates, by category: parameters, gradients, optimizer state, activations, temporaries). The model is
the run's own architecture, with its method applied, at random weights (the shapes are what count), fed a batch of
the run's batch size x max_length; one step runs first so that the optimizer state exists, as in every step but
the first. What neither side counts: the CUDA context and the allocator's fragmentation (reserved above
allocated), which a GPU adds on top.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = [("fp32", {}), ("bf16", {"train.precision": "bf16"}),
            ("fp32 + checkpointing", {"train.gradient_checkpointing": True})]


def measured_peak(run) -> dict:
    """Peak bytes one training step's tensors hold, by category (MemTracker), after a first step."""
    import torch
    from torch.distributed._tools.mem_tracker import MemTracker

    from peftbench import footprint
    from peftbench.run.recipe import autocast

    torch.manual_seed(0)
    model, _, config, kind = footprint.build(run, device="cpu")
    model.train()
    footprint._checkpointing(model, run.train.gradient_checkpointing)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)  # fused, as the runs use it on CUDA
    inputs = footprint._inputs(kind, config, run.train.batch_size, run.max_length())

    def step():
        with autocast(torch.device("cpu"), run.train.precision):
            loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    class Tracker(MemTracker):  # (MemTracker hooks every parameter's gradient; a frozen base has none to hook)
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            return super()._track_module_params_and_buffers(module, install_grad_hooks=False)

    step()
    tracker = Tracker()
    tracker.track_external(model, opt)
    with tracker:
        step()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    out = {str(k).split(".")[-1].lower(): v / 2**20 for k, v in peak.items()}
    del model, opt, tracker
    gc.collect()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", nargs="?", default=str(HERE / "plan_grid.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from peftbench import footprint
    from peftbench.config import apply_overrides, expand, load_grid

    torch.set_num_threads(int(next((s.split("=")[1] for s in args.set if s.startswith("train.threads=")), "2")))
    rows = []
    for label, overrides in SETTINGS:
        grid = load_grid(args.grid, overrides=[*args.set, *(f"{k}={json.dumps(v)}" for k, v in overrides.items())])
        seen = set()
        for run in expand(grid):
            key = (run.model.name, run.method.label, run.task.name)
            if key in seen:
                continue
            seen.add(key)
            predicted = footprint.footprint(run, footprint.parse_target("80GB"))["predicted_mb"]
            measured = measured_peak(run)
            rows.append({"model": key[0], "method": key[1], "task": key[2], "setting": label,
                         "batch_size": run.train.batch_size, "max_length": run.max_length(),
                         "predicted_mb": predicted, "measured_mb": measured})
            print(f"{key[1]:>14} {label:<22} predicted {predicted['total']:8.0f} MB, measured peak "
                  f"{measured['total']:8.0f} MB", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| Method | Setting | Predicted: weights / gradients / optimizer / activations = total (MB) | Measured peak "
          "(MB): parameters / gradients / optimizer / activations + temporaries = total | Error |")
    print("|---|---|---|---|---|")
    for r in rows:
        p, m = r["predicted_mb"], r["measured_mb"]
        err = (p["total"] - m["total"]) / m["total"]
        print(f"| {r['method']} | {r['setting']} | {p['weights']:.0f} / {p['gradients']:.0f} / {p['optimizer']:.0f} / "
              f"{p['activations']:.0f} = {p['total']:.0f} | {m.get('param', 0) + m.get('buffer', 0):.0f} / "
              f"{m.get('grad', 0):.0f} / {m.get('opt', 0):.0f} / {m.get('act', 0) + m.get('temp', 0) + m.get('oth', 0):.0f}"
              f" = {m['total']:.0f} | {err:+.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
