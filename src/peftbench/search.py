"""Optuna searches (``sweep: {optuna: {trials, space}}``): which settings a search tries, and when the pruner stops
a trial.

A search runs its trials on the sweep's first ``seeds`` seeds (default: all), ``parallel`` at a time; a trial's
value is the mean best validation score of its runs. Trial ``n``'s setting is drawn by a sampler seeded with
``seed + n`` from the trials finished before its batch, through optuna's own ``TPESampler`` / ``RandomSampler``
on a study rebuilt from those trials. So every draw is a function of the search's spec and the trials before it:
the runner replays a search from the store (``replay``), and a search killed mid-way goes on with the trials an
uninterrupted one would have run; a trial's run id is that of the same setting in a listed sweep of the same spec.

The median pruner (optuna's ``MedianPruner``) stops a trial's run after an epoch when its best validation score so
far is below (above, for a lower-is-better metric) the median of the finished trials' runs on the same seed at
that epoch, once ``prune_startup`` trials have finished and from epoch ``prune_after`` on. A pruned run is
kept (its test pass too) but never chosen. Once every trial has finished, the best finished trial is the choice
(a tie: the earlier trial) and the sweep's other seeds run at it (``sweeps.follow_ups``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .config import GridSpec, MethodSpec, ModelSpec, OptunaSpec, RunSpec, TaskSpec, at_point, combos, run_spec
from .result import RunResult
from .sweeps import higher_is_better


@dataclass
class Trial:
    number: int
    point: dict[str, Any]
    runs: list[RunSpec]
    results: list[Optional[RunResult]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return bool(self.results) and all(r is not None for r in self.results)

    @property
    def pruned(self) -> bool:
        return any(r.training.pruned_at is not None for r in self.results if r is not None)

    @property
    def value(self) -> float:
        return sum(r.training.best_validation for r in self.results) / len(self.results)


@dataclass
class Search:
    """One search's state as far as the store has it: its trials so far, and whether all have finished."""

    model: ModelSpec
    task: TaskSpec
    method: MethodSpec
    first: list[int]  # the seeds every trial runs
    later: list[int]  # the seeds that follow at the chosen setting
    trials: list[Trial]
    done: bool

    @property
    def pending(self) -> list[RunSpec]:
        """The runs of the trials drawn but not finished (the next batch to run)."""
        return [run for t in self.trials if not t.finished for run, r in zip(t.runs, t.results) if r is None]

    def chosen(self) -> Optional[Trial]:
        """The best finished, unpruned trial (the earlier one on a tie); None before the search is done."""
        complete = [t for t in self.trials if t.finished and not t.pruned]
        if not self.done or not complete:
            return None
        higher = higher_is_better(complete[0].results[0])
        return max(complete, key=lambda t: (t.value if higher else -t.value, -t.number))


def searches(grid: GridSpec) -> list[tuple[ModelSpec, TaskSpec, MethodSpec, list[int], list[int]]]:
    """(model, task, method, the seeds every trial runs, the seeds that follow) of each optuna search."""
    out = []
    for model, task, method in combos(grid):
        if method.sweep and method.sweep.optuna is not None:
            k = method.sweep.seeds or len(grid.seeds)
            out.append((model, task, method, grid.seeds[:k], grid.seeds[k:]))
    return out


@dataclass
class Progress:
    pending: list[RunSpec]  # the runs of the trials to run next
    later: list[RunSpec]  # the finished searches' later seeds at their chosen settings
    waiting: list[str]  # one line for each search not finished
    finished: list[str]  # the run ids of the trials finished so far


def state(grid: GridSpec, result_of: Callable[[str], Optional[RunResult]],
          shard: tuple[int, int] | None = None) -> Progress:
    """Where the grid's searches stand (``result_of``: a run id's finished result, or None). ``shard=(i, n)``:
    shard i keeps searches i, i+n, ... whole."""
    pending, later, waiting, finished = [], [], [], []
    for j, (model, task, method, first, rest) in enumerate(searches(grid)):
        if shard and j % shard[1] != shard[0]:
            continue
        search = replay(grid, model, task, method, first, rest, result_of)
        finished += [run.run_id for t in search.trials for run, r in zip(t.runs, t.results) if r is not None]
        if not search.done:
            pending += search.pending
            waiting.append(f"{model.name} / {method.label} / {task.name}: optuna trial {len(search.trials)} of "
                           f"{method.sweep.optuna.trials} not finished")
            continue
        chosen = search.chosen()
        if chosen is None:
            waiting.append(f"{model.name} / {method.label} / {task.name}: every optuna trial was pruned")
            continue
        later += [run_spec(model, at_point(method, chosen.point), task, grid.train, seed) for seed in rest]
    return Progress(pending, later, waiting, finished)


def count(grid: GridSpec, shard: tuple[int, int] | None = None) -> int:
    """How many runs the searches make (every trial on its seeds, then the later seeds once)."""
    return sum(m.sweep.optuna.trials * len(first) + len(rest) for j, (_, _, m, first, rest) in enumerate(searches(grid))
               if not shard or j % shard[1] == shard[0])


def replay(grid: GridSpec, model: ModelSpec, task: TaskSpec, method: MethodSpec, first: list[int],
           later: list[int], result_of: Callable[[str], Optional[RunResult]]) -> Search:
    """The search as the store has it: each batch of trials drawn from the finished ones before it, up to the
    first batch with a run that has not finished (``result_of``: a run id's finished result, or None)."""
    spec: OptunaSpec = method.sweep.optuna
    trials: list[Trial] = []
    while len(trials) < spec.trials and not spent(spec, trials):
        history = list(trials)
        for n in range(len(trials), min(len(trials) + spec.parallel, spec.trials)):
            point = draw(spec, history, n)
            variant = at_point(method, point, trial=n)
            runs = [run_spec(model, variant.model_copy(update={"prune": prune_rule(spec, history, seed)}), task,
                             grid.train, seed) for seed in first]
            found = [result_of(r.run_id) for r in runs]
            trials.append(Trial(n, point, runs, [None if f is None else RunResult.load(f) for f in found]))
        if not all(t.finished for t in trials):
            return Search(model, task, method, first, later, trials, done=False)
    return Search(model, task, method, first, later, trials, done=True)


def spent(spec: OptunaSpec, trials: list[Trial]) -> bool:
    """Whether the finished trials have used the search's compute budget (``compute_seconds``; a run without a
    measured cost counts nothing)."""
    if spec.compute_seconds is None:
        return False
    used = sum(r.compute_seconds or 0.0 for t in trials for r in t.results if r is not None)
    return used >= spec.compute_seconds


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("sweep.optuna needs optuna: pip install 'peftbench[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(spec: OptunaSpec) -> dict:
    optuna = _optuna()
    D = optuna.distributions
    out = {}
    for name, s in spec.space.items():
        if isinstance(s, list):
            out[name] = D.CategoricalDistribution(s)
        elif s.integer:
            out[name] = D.IntDistribution(s.low, s.high, log=s.log, step=s.step or 1)
        else:
            out[name] = D.FloatDistribution(s.low, s.high, log=s.log, step=s.step)
    return out


def draw(spec: OptunaSpec, history: list[Trial], number: int) -> dict[str, Any]:
    """Trial ``number``'s setting: the sampler, seeded with ``seed + number``, on a study of ``history`` (finished
    trials as COMPLETE with their values, pruned ones as PRUNED with their curves). Settings come in the space's
    order."""
    optuna = _optuna()
    dists = distributions(spec)
    higher = not history or higher_is_better(history[0].results[0])
    if spec.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=spec.seed + number, n_startup_trials=spec.startup)
    else:
        sampler = optuna.samplers.RandomSampler(seed=spec.seed + number)
    study = optuna.create_study(direction="maximize" if higher else "minimize", sampler=sampler)
    for t in history:
        state = optuna.trial.TrialState.PRUNED if t.pruned else optuna.trial.TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(
            params=t.point, distributions=dists, state=state, value=None if t.pruned else t.value,
            intermediate_values=_curve(t.results[0])))
    params = study.ask(dists).params
    return {name: params[name] for name in spec.space}


def prune_rule(spec: OptunaSpec, history: list[Trial], seed: int) -> Optional[dict]:
    """What the training loop needs to apply the median pruner to a trial's run on ``seed``: the settings and the
    validation curves of the finished, unpruned trials' runs on that seed. None: no pruning."""
    if spec.pruner == "none":
        return None
    curves = [_curve(r) for t in history if t.finished and not t.pruned for r in t.results if r.seed == seed]
    return {"pruner": spec.pruner, "after": spec.prune_after, "startup": spec.prune_startup, "curves": curves}


def should_prune(rule: Optional[dict], curve: dict[int, float], higher: bool) -> bool:
    """Whether optuna's median pruner stops a run whose validation scores so far are ``curve`` (epoch -> score),
    against ``rule``'s finished curves (``prune_rule``)."""
    if not rule or not curve:
        return False
    optuna = _optuna()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=rule["startup"], n_warmup_steps=rule["after"])
    study = optuna.create_study(direction="maximize" if higher else "minimize", pruner=pruner)
    for c in rule["curves"]:
        c = {int(k): v for k, v in c.items()}
        study.add_trial(optuna.trial.create_trial(value=c[max(c)] if c else 0.0, intermediate_values=c))
    trial = study.ask()
    for epoch, score in sorted(curve.items()):
        trial.report(score, epoch)
    return trial.should_prune()


def _curve(result: RunResult) -> dict[int, float]:
    """A run's validation score by epoch (epochs after training started)."""
    metric = result.training.validation_metric
    return {int(c["epoch"]): c["val_metrics"][metric] for c in result.curves or []
            if c.get("epoch", 0) > 0 and metric in (c.get("val_metrics") or {})}
