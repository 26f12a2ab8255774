"""Command line: ``peftbench demo | run | report | list | validate``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from importlib import resources

from . import __version__, registry
from .config import ConfigError, combos, expand, load_grid
from .config.errors import message
from . import search
from .sweeps import comparing_seeds, count_follow_ups, staged
from .archive import ArchiveError
from .store import StoreError

DEMO_GRID = "demo.yaml"


def _grid_from(args):
    if args.command == "demo":
        text = (resources.files("peftbench.data") / DEMO_GRID).read_text(encoding="utf-8")
        import yaml

        overrides = list(args.overrides)
        if args.output:
            overrides.append(f"output_dir={args.output}")
        return load_grid(data=yaml.safe_load(text), overrides=overrides)
    return load_grid(args.grid, args.overrides)


def _preflight(grid, origin: str, here: bool = True) -> None:
    """Refuse the grid on its first problem; otherwise set what its runs' environment needs (offline mode where
    the hub cannot be reached: inherited by the runs' processes). ``here``: the grid runs on this machine."""
    from .preflight import check, offline_env

    problems = check(grid, here=here)
    if problems:
        raise ConfigError(f"{origin}: {problems[0]}" + (f" (+{len(problems) - 1} more: peftbench validate lists them)"
                                                         if len(problems) > 1 else ""))
    os.environ.update(offline_env(grid))


def cmd_run(args) -> int:
    from .report import render
    from .report.render import save_report_settings
    from .runner import run_grid

    grid = _grid_from(args)
    _preflight(grid, getattr(args, "grid", None) or "demo")
    runs, later = expand(grid), count_follow_ups(grid) + search.count(grid)
    print(f"grid '{grid.name}': {len(grid.models)} model(s) x {len(grid.methods)} method(s) x {len(grid.tasks)} task(s) "
          f"x {len(grid.seeds)} seed(s) = {len(runs) + later} run(s)"
          + (f" ({later} of them after their staged sweep has chosen a rate or drawn by an optuna search)" if later else "") + f" -> {grid.output_dir}")
    jobs, devices, shard = _scale_args(args)
    save_report_settings(grid.output_dir, grid.report)  # `peftbench report` on this store reads them later
    try:
        summary = run_grid(grid, in_process=args.in_process, show_progress=not args.quiet, jobs=jobs, devices=devices,
                           shard=shard, executor=args.executor, address=args.address)
    except BrokenPipeError:  # the reader went away (`peftbench validate grid.yaml | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 141
    except KeyboardInterrupt:
        print("peftbench: interrupted; the run in progress is marked interrupted, finished runs are kept (run the same "
              "command again to resume)", file=sys.stderr)
        if not args.no_report:
            try:
                render(grid.output_dir, echo=lambda msg: print(msg, file=sys.stderr), settings=grid.report)
            except (FileNotFoundError, KeyboardInterrupt):
                pass
        return 130
    print(f"{len(summary.finished)} run(s) finished, {summary.skipped} skipped (already done), {len(summary.failed)} failed"
          + (f", {len(summary.claimed_elsewhere)} run by another runner on this store" if summary.claimed_elsewhere
             else ""))
    if not args.no_report:
        render(grid.output_dir, settings=grid.report)
    return 1 if summary.failed else 0


def _scale_args(args) -> tuple[int, list[str] | None, tuple[int, int] | None]:
    """--jobs N, --devices 0,1,... and --shard i/n, checked (one line each)."""
    if args.jobs < 1:
        raise ConfigError(f"--jobs: must be at least 1 (got {args.jobs})")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    if (args.jobs > 1 or devices or args.executor != "local") and args.in_process:
        raise ConfigError("--jobs / --devices / --executor run each run in its own process; drop --in-process")
    shard = None
    if args.shard:
        i, _, n = args.shard.partition("/")
        if not (i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
            raise ConfigError(f"--shard: '{args.shard}' is not i/n with 0 <= i < n (e.g. --shard 0/4 for the first "
                              "of four; with Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
        shard = (int(i), int(n))
    return args.jobs, devices, shard


def cmd_plan(args) -> int:
    import json

    from .plan import plan, table

    grid = load_grid(args.grid, args.overrides)
    if args.target:
        from .footprint import parse_target
        from .plan import plan_target, target_table

        try:
            target = parse_target(args.target)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _preflight(grid, args.grid, here=False)
        result = plan_target(grid, target, echo=(lambda *a: None) if args.json else print)
        print(json.dumps(result, indent=1) if args.json else target_table(result))
        return 0
    _preflight(grid, args.grid)
    result = plan(grid, steps=args.steps, echo=(lambda *a: None) if args.json else print)
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


def cmd_merge(args) -> int:
    from .store import merge

    added, duplicates = merge(args.sources, args.into)
    print(f"{added} run(s) added, {duplicates} duplicate(s) skipped -> {args.into} (peftbench report {args.into})")
    return 0


def cmd_archive(args) -> int:
    from . import archive

    n = archive.write(args.results, args.out)
    size = Path(args.out).stat().st_size / 1e6
    print(f"{n} run(s) -> {args.out} ({size:.2f} MB); render it anywhere with: peftbench report {args.out}")
    return 0


def cmd_report(args) -> int:
    from . import archive
    from .report import render

    from pydantic import ValidationError

    results = args.results
    if archive.is_archive(results):  # unpack, then render as any results folder
        into = Path(args.into) if args.into else Path(str(results)[: -len(archive.SUFFIX)] + "-results")
        n = archive.unpack(results, into)
        print(f"unpacked {n} run(s) from {results} into {into}")
        results = into
    elif args.into:
        raise ConfigError("--into is for an archive (a .jsonl.gz file); a results folder is rendered in place")
    try:
        render(results, baseline=args.baseline, resamples=args.resamples, correction=args.correction,
               equivalence_margin=args.equivalence_margin, alpha=args.alpha)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(f"--{str(e['loc'][-1]).replace('_', '-')}: {message(e)}") from None
    return 0


def cmd_validate(args) -> int:
    """Each grid: the schema and options, then what the runs will need (files, folders, recipes, models)."""
    from .preflight import check

    grids = [g for g in args.grids if "=" not in g]
    overrides = [g for g in args.grids if "=" in g] + list(args.override or [])
    failed = 0
    for path in grids:
        try:
            grid = load_grid(path, overrides)
        except ConfigError as exc:
            print(f"peftbench: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        problems = [] if args.schema else check(grid)
        for p in problems:
            print(f"peftbench: error: {path}: {p}", file=sys.stderr)
        if problems:
            failed += 1
            continue
        runs = expand(grid)
        print(f"{path}: valid{' (schema and options; files, packages and hub not checked)' if args.schema else ''}; "
              f"{len(runs) + count_follow_ups(grid) + search.count(grid)} run(s):")
        if not args.brief:
            for r in runs:
                lr = f"{r.lr():g}" if r.lr() else "method default"
                print(f"  {r.slug}  lr={lr} epochs={r.epochs()} max_length={r.max_length()}")
            for model, task, method, first, seeds in staged(grid):
                print(f"  {model.name} / {method.label} / {task.name}: seeds {', '.join(map(str, seeds))} at the "
                      f"learning rate chosen on seed(s) {', '.join(map(str, first))}")
            for model, task, method in combos(grid):
                if method.sweep and method.sweep.extend:
                    print(f"  {model.name} / {method.label} / {task.name}: up to {method.sweep.extend} more rate(s) "
                          f"beyond an edge winner, on seed(s) {', '.join(map(str, comparing_seeds(grid, method)))}")
            for model, task, method, first, seeds in search.searches(grid):
                spec = method.sweep.optuna
                print(f"  {model.name} / {method.label} / {task.name}: optuna search, {spec.trials} trial(s) "
                      f"({spec.sampler}, pruner {spec.pruner}) over {', '.join(spec.space)} on seed(s) "
                      f"{', '.join(map(str, first))}" + (f"; seeds {', '.join(map(str, seeds))} at the chosen setting"
                                                         if seeds else ""))
    return 2 if failed else 0


def cmd_repair(args) -> int:
    from .store import repair

    moved, n = repair(args.results)
    print((f"moved the damaged store to {moved}; " if moved else "the store was readable; ") +
          f"{n} finished run(s) recorded from the run folders in {args.results}")
    return 0


DESCRIPTIONS = {
    "method": "fine-tuning methods (methods[].name)",
    "task": "task types (tasks[].type)",
    "architecture": "architectures (model families), matched in this order",
    "recipe": "data recipes (tasks[].data.source: recipe:<name>)",
    "tiny": "tiny in-process model families (models[].source: tiny:<family>)",
}


def cmd_list(args) -> int:
    if args.what == "presets":
        from . import presets

        for name in presets.names():
            print(f"presets/{name}.yaml  {presets.describe(name)}")
        print("run one with: peftbench run presets/NAME.yaml (validate it first: peftbench validate presets/NAME.yaml)")
        return 0
    print("model sources: a hub id (org/name), a local checkpoint folder, a .gguf file, "
          "package:<python-package>/<folder>, tiny:<family>")
    for kind, desc in DESCRIPTIONS.items():
        print(f"{desc}: {', '.join(registry.names(kind))}")
    from .options import describe

    print("method options (methods[].options, or beside name):")
    for name in registry.names("method"):
        print(f"  {name}: {describe(registry.options('method', name))}")
    print("task types: metrics (default validation metric) and data.options:")
    for name in registry.names("task"):
        cls = registry.get("task", name)
        print(f"  {name}: {', '.join(cls.metric_names)} ({cls.default_metric}); options: {describe(cls.Options)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peftbench", description="Benchmark fine-tuning methods on quality and cost.")
    p.add_argument("--version", action="version", version=f"peftbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def run_opts(sp):
        sp.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4 seeds=[1,2,3]")
        sp.add_argument("--in-process", action="store_true", help="run everything in this process (debugging)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--no-report", action="store_true", help="do not render the report at the end")
        sp.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process on a share of the "
                        "cores (default 1: one run at a time with every core)")
        sp.add_argument("--devices", default=None, help="GPUs to spread runs over, one run per GPU: e.g. 0,1,2,3")
        sp.add_argument("--executor", default="local", choices=("local", "ray"),
                        help="local (this machine) or ray (one Ray task per run; pip install -e '.[ray]')")
        sp.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
        sp.add_argument("--shard", default=None, help="i/n: run only shard i (0-based) of n of the grid (Slurm arrays); "
                        "join the shards' folders with peftbench merge")

    d = sub.add_parser("demo", help="offline demo: MiniLM x {full, lora, dora, adalora} on the shipped sentiment set")
    d.add_argument("--output", default=None, help="results folder (default: peftbench-demo)")
    run_opts(d)
    r = sub.add_parser("run", help="run a grid (finished runs are skipped)")
    r.add_argument("grid", help="grid YAML file")
    run_opts(r)
    rep = sub.add_parser("report", help="render report.md / report.html from a results folder")
    rep.add_argument("results", help="results folder (holds peftbench.sqlite), or an archive (.jsonl.gz, from "
                                     "peftbench archive) to unpack and render")
    rep.add_argument("--into", help="where an archive is unpacked and its report written (default: beside it, "
                                    "NAME-results/)")
    rep.add_argument("--baseline", help="method the others are compared with, paired (default: the grid's "
                                        "report.baseline, else full)")
    rep.add_argument("--resamples", type=int, help="test-set resamples per comparison for metrics that are no mean "
                                                  "of per-example scores (default and least 1000)")
    rep.add_argument("--correction", help="multiple-comparison correction: holm (default), bonferroni, none")
    rep.add_argument("--equivalence-margin", type=float, help="TOST margin on the metric's 0-1 scale (default 0.02)")
    rep.add_argument("--alpha", type=float, help="family-wise level of the verdicts (default 0.05)")
    v = sub.add_parser("validate", help="validate grid files (schema, options, files, models) and list their runs")
    v.add_argument("grids", nargs="+", help="grid YAML files, then key=value overrides applied to each")
    v.add_argument("-o", "--override", action="append", help="key=value override (repeatable)")
    v.add_argument("--brief", action="store_true", help="one line per grid")
    v.add_argument("--schema", action="store_true", help="check the schema and options only, not what the runs need "
                   "on this machine (files, packages, hub): for a grid meant for another machine, e.g. a preset")
    li = sub.add_parser("list", help="methods, tasks, data recipes, model sources and metrics known to this install; "
                        "'list presets': the studies' ready-made grids")
    li.add_argument("what", nargs="?", choices=("presets",), help="presets: the shipped study grids and their twins")
    pl = sub.add_parser("plan", help="predict each run's peak memory and time (and the grid's) from a few profiled steps")
    pl.add_argument("grid", help="grid YAML file")
    pl.add_argument("overrides", nargs="*", help="key=value overrides")
    pl.add_argument("--steps", type=int, default=3, help="optimizer steps profiled per (model, method, task)")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.add_argument("--target", help="predict peak GPU memory on another machine instead, without a GPU: a GPU name "
                    "(A100-80GB, H100, L4, T4 ...) or a size (24GB); says which runs fit and the cheapest change "
                    "for the others")
    mg = sub.add_parser("merge", help="join results folders (e.g. shards) into one, with no run twice")
    mg.add_argument("sources", nargs="+", help="results folders to join")
    mg.add_argument("--into", required=True, help="the results folder that receives them (created if needed)")
    ar = sub.add_parser("archive", help="write what a report's verdicts need (configs, results, per-example test "
                                        "predictions; no weights) into one .jsonl.gz file")
    ar.add_argument("results", help="results folder (holds peftbench.sqlite)")
    ar.add_argument("out", help="the archive to write, NAME.jsonl.gz")
    rp = sub.add_parser("repair", help="rebuild a damaged results store from its run folders")
    rp.add_argument("results", help="results folder (holds peftbench.sqlite and runs/)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handler = {"demo": cmd_run, "run": cmd_run, "report": cmd_report, "archive": cmd_archive, "validate": cmd_validate,
               "list": cmd_list, "repair": cmd_repair, "merge": cmd_merge, "plan": cmd_plan}
    try:
        return handler[args.command](args)
    except (ConfigError, StoreError, ArchiveError) as exc:  # one-line, user-facing errors
        print(f"peftbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`peftbench validate grid.yaml | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 141
    except KeyboardInterrupt:
        print("peftbench: interrupted; finished runs are kept, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
