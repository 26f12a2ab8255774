"""From stored runs to the cells of the comparison.

A *cell* is the set of runs whose resolved configs are identical except for the seed: only those are
averaged as seeds.  Runs of one model x task x method label whose configs differ in anything else (a re-run
with ``train.epochs=2`` into the same folder) become separate rows, each labelled with what differs.
Learning-rate sweeps keep the value with the best mean validation score over the seeds every value ran (the
others are listed; ``sweeps.choose``, the rule a staged sweep's runner uses too).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .. import registry
from ..result import RunResult
from ..store import cell_key
from ..sweeps import choose, in_listed_order, point_key, point_of, point_text


@dataclass
class Cell:
    model: str
    task: str
    label: str  # the method's label, plus what differs from the other cells of the same method, if anything
    method_name: str
    runs: list[RunResult] = field(default_factory=list)

    def __post_init__(self):
        self.runs = [RunResult.load(r) for r in self.runs]

    @property
    def first(self) -> RunResult:
        return self.runs[0]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)


@dataclass(frozen=True)
class Tuning:
    """What a cell's sweep tried: every run of its (model, task, method) across settings, and the chosen one."""

    runs: tuple[RunResult, ...]
    chosen: dict

    @property
    def trials(self) -> int:
        return len({tuple(sorted(point_of(r).items())) for r in self.runs}) or 1

    @property
    def steps(self) -> int:
        return sum(r.training.optimizer_steps or 0 for r in self.runs)

    @property
    def compute(self) -> float | None:
        """GPU- or CPU-seconds summed over the sweep's runs (``RunResult.compute_seconds``); None where any run
        lacks it."""
        each = [r.compute_seconds for r in self.runs]
        return None if not each or any(x is None for x in each) else sum(each)


def select_sweeps(results: list[RunResult | dict], tunings: dict | None = None
                  ) -> tuple[list[RunResult], list[list[str]]]:
    """Sweeps: per (model, task, method) with ``sweep``, keep the runs of the setting whose mean best validation
    score (over the seeds every setting ran) is best; the others stay in the store and are listed. ``tunings``,
    where given, receives per (model, task, method) what the sweep tried and chose (``Tuning``)."""
    kept, rows = [], []
    swept: dict = defaultdict(lambda: defaultdict(list))
    for r in map(RunResult.load, results):
        if r.sweep:
            swept[(r.model, r.task, r.method)][point_key(point_of(r))].append(r)
        else:
            kept.append(r)
    for (model, task, method), by_point in sorted(swept.items()):
        trials = {k: min((r.sweep_trial for r in runs if r.sweep_trial is not None), default=None)
                  for k, runs in by_point.items()}
        searched = any(t is not None for t in trials.values())  # an optuna search: its trials in their order
        if searched:
            by_point = dict(sorted(by_point.items(), key=lambda kv: (trials[kv[0]] is None, trials[kv[0]] or 0)))
        else:  # in the order the grid lists the settings, so that a tie goes where the runner's staged sweep sent it
            by_point = in_listed_order(by_point, next(iter(by_point.values()))[0].sweep)
        pruned = {k: next((r.training.pruned_at for r in runs if r.training.pruned_at), None)
                  for k, runs in by_point.items()}
        best, score = choose({k: runs for k, runs in by_point.items() if not pruned[k]})
        kept += by_point[best]
        if tunings is not None:
            tunings[(model, task, method)] = Tuning(tuple(r for runs in by_point.values() for r in runs),
                                                    point_of(by_point[best][0]))
        metric = by_point[best][0].training.validation_metric
        order = sorted(by_point, key=lambda k: trials[k] if searched else _order(point_of(by_point[k][0])))
        for key in order:
            runs = by_point[key]
            val = (f"{metric} {score[key]:.4f}" if key in score else
                   f"{metric} {sum(r.training.best_validation for r in runs) / len(runs):.4f} (pruned)")
            mark = "chosen" if key == best else f"pruned after epoch {pruned[key]}" if pruned[key] else ""
            setting = point_text(point_of(runs[0]))
            rows.append([model, task, method, f"trial {trials[key]}: {setting}" if searched else setting, val,
                         str(len(runs)), mark])
    return kept, rows


def _order(point: dict) -> list:
    """A sort key for settings: numbers by value, anything else by its text."""
    return [(k, (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v)))
            for k, v in sorted(point.items())]


def _flat(d, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _difference_labels(configs: list[dict]) -> list[str]:
    """For configs of one method that differ beyond the seed: ``key=value`` of what differs, per config."""
    flats = [_flat({k: v for k, v in c.items() if k != "seed"}) for c in configs]
    keys = sorted({k for f in flats for k in f if len({str(g.get(k)) for g in flats}) > 1})
    return [", ".join(f"{k.removeprefix('train.').removeprefix('task.')}={f.get(k)}" for k in keys[:3]) +
            (", ..." if len(keys) > 3 else "") for f in flats]


def describe(quantization: dict) -> str:
    """How a base was quantised, for a label: ``4-bit nf4``, ``8-bit``."""
    bits = quantization.get("bits")
    return f"{bits}-bit {quantization.get('quant_type', '')}".strip() if bits == 4 else f"{bits}-bit"


def build_cells(results: list[RunResult | dict]) -> dict[tuple[str, str], list[Cell]]:
    """(model, task) -> cells in the method registry's order. Results need their ``config``
    (``Store.results(with_config=True)``); without it each run's own id stands in (no pooling across configs)."""
    order = registry.names("method")
    results = [RunResult.load(r) for r in results]
    plain: dict = {}  # a checkpoint -> the name of a model entry that loads it unquantised
    for r in results:
        if not r.model_info.get("quantization"):
            plain.setdefault(r.model_info.get("resolved"), r.model)
    by_method: dict = defaultdict(lambda: defaultdict(list))
    for r in results:
        key = cell_key(r.config) if r.config is not None else r.run_id
        model, label = r.model, r.method
        quantized = r.model_info.get("quantization")
        if quantized:  # QLoRA beside full and LoRA of the same checkpoint, its label saying how it was loaded
            model, label = plain.get(r.model_info.get("resolved"), r.model), f"{r.method} ({describe(quantized)})"
        by_method[(model, r.task, label)][key].append(r)
    groups: dict = defaultdict(list)
    for (model, task, label), cells in by_method.items():
        keys = list(cells)
        names = [label] if len(keys) == 1 else [f"{label} [{d}]" for d in
                                                _difference_labels([cells[k][0].config or {} for k in keys])]
        for name, k in zip(names, keys):
            runs = sorted(cells[k], key=lambda r: r.seed)
            groups[(model, task)].append(Cell(model, task, name, runs[0].method_name, runs))
    for cells in groups.values():
        cells.sort(key=lambda c: (order.index(c.method_name) if c.method_name in order else len(order), c.label))
    return dict(sorted(groups.items()))
