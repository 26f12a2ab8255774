"""The report: stored runs -> cells -> statistics, PES, paired comparisons -> tables and figures ->
``report.md``, ``report.html`` (self-contained: figures embedded, sortable tables, a filter) and, under
``report/``, every table as CSV and LaTeX and every figure as PNG and SVG.  Every number comes from the
stored runs; nothing is typed in."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from .. import registry
from ..config import safe_name
from ..result import RunResult
from ..store import REPORT_SETTINGS, Store
from . import plots
from ..tasks.base import declared, percent_metrics
from .aggregate import Cell, build_cells, describe, select_sweeps
from ..config import ReportSpec
from .compare import Decided, compare, decide, points, resamples_for, verdict
from .diagnostics import budget_table, budgets, diagnostics_table, with_diagnostics, without_collapsed
from .formats import Table, csv_text, html_table, latex, markdown, page
from .pes import pes, pes_flags
from .statistics import rank_methods, summarise

CONTENDED = "⚠"


def _fmt(x, digits=4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def metric_cell(values, digits=4, bounds=(None, None)) -> str:
    """mean ± std [95% CI] over seeds, the interval clipped to ``bounds`` (marked ✂); one seed marked."""
    s = summarise(values, bounds=bounds)
    if s.mean is None:
        return "–"
    if s.single:
        return f"{s.mean:.{digits}f} (1 seed)"
    return (f"{s.mean:.{digits}f} ± {s.std:.{digits}f} [{s.low:.{digits}f}, {s.high:.{digits}f}]"
            + (" ✂" if s.clipped else ""))


def bounds_of(task_type: str, metric: str) -> tuple:
    """The range of a metric as its task declares it (a per-type key such as 'entity_f1/PER' by its base)."""
    return declared(task_type, metric.split("/", 1)[0]).range


POSITIVE = (0.0, None)  # times and scores that cannot be negative


def _int(n) -> str:
    return f"{int(n):,}"


def task_info(task_type: str):
    try:
        cls = registry.get("task", task_type)
        return list(cls.metric_names), dict(cls.pes_weights)
    except ValueError:
        return [], {}


def reported_metrics(cells: list[Cell]) -> list[str]:
    """The task type's metrics that these runs report (binary P / R / F1 only where a positive label is named)."""
    names = task_info(cells[0].first.task_type)[0]
    return [m for m in names if any(r.test.metrics.get(m) is not None for c in cells for r in c.runs)]


def pes_weights(run: RunResult) -> dict:
    return run.pes_weights or task_info(run.task_type)[1]


def memory_for_pes(run: RunResult) -> tuple[float | None, str]:
    """V in GB and what it is: GPU memory allocated on CUDA, else the process's peak RSS above its baseline."""
    m = run.memory
    if m.peak_memory_kind == "cuda_allocated":
        return m.peak_memory_mb / 1024, "GPU peak allocated"
    delta = m.peak_rss_delta_mb
    return (delta / 1024 if delta is not None else None), "CPU peak RSS above the process baseline"


def _clean(runs) -> tuple[list[RunResult], bool]:
    """The runs whose timings are comparable: the clean ones, or all (flagged) when every run was contended."""
    clean = [r for r in runs if not r.timing.contended]
    return (clean, False) if clean else (list(runs), True)


def resources_table(name: str, cells: list[Cell]) -> Table:
    rows = []
    for c in cells:
        p = c.first.parameters
        timed, flagged = _clean(c.runs)
        mark = f" {CONTENDED}" if flagged else ""
        t = [r.timing for r in timed]
        share = [x.cpu_share_per_thread for x in t]
        rows.append([c.label, _int(p.trainable), _int(p.total), f"{p.trainable_pct:.3f}",
                     _fmt(summarise([r.memory.peak_memory_mb for r in c.runs]).mean, 0),
                     _fmt(summarise([r.memory.peak_rss_delta_mb for r in c.runs]).mean, 0),
                     metric_cell([x.train_seconds for x in t], 1, POSITIVE) + mark,
                     _fmt(summarise([x.train_cpu_seconds for x in t]).mean, 1),
                     ", ".join(sorted({str(x.threads if x.threads is not None else "?") for x in t})),
                     _fmt(summarise(share).mean, 2) + mark,
                     _fmt(summarise([x.train_samples_per_second for x in t]).mean, 1) + mark,
                     f"{sum(r.timing.contended for r in c.runs)}/{len(c.runs)}",
                     _fmt(summarise([r.training.epochs_run for r in c.runs]).mean, 1)])
    kind = cells[0].first.memory.peak_memory_kind
    mem = "Peak GPU mem (MB)" if kind == "cuda_allocated" else "Peak RSS (MB)"
    return Table(f"resources__{name}", "Parameters and resources",
                 ["Method", "Trainable", "Total", "Trainable %", mem, "RSS above baseline (MB)", "Train time (s)",
                  "Train CPU (s)", "Threads", "CPU share / thread", "Train samples/s", "Contended runs", "Epochs run"],
                 rows, caption="Timings average the clean runs; ⚠: every run was contended (CPU share per thread "
                               "below 0.7), timings not comparable.")


def _speed(runs: list[RunResult], setting: str, key: str, field: str):
    """The mean of one inference figure over the runs that measured it (their clean measurements, else all)."""
    speeds = [getattr(getattr(r.inference, setting), key) for r in runs
              if r.inference is not None and getattr(r.inference, setting) is not None]
    clean = [x for x in speeds if not x.contended] or speeds
    return summarise([getattr(x, field) for x in clean]).mean, bool(speeds) and not any(not x.contended for x in speeds)


def inference_table(name: str, cells: list[Cell]) -> Table | None:
    """What a trained run costs to keep and to use (``train.inference_cost``); None where no run measured it."""
    if not any(r.inference is not None and r.inference.unmerged is not None for c in cells for r in c.runs):
        return None
    rows = []
    for c in cells:
        measured = [r for r in c.runs if r.inference is not None and r.inference.unmerged is not None]
        if not measured:
            rows.append([c.label] + ["–"] * 7 + [""])
            continue
        cols = []
        for setting, key, field, digits in (("unmerged", "batch1", "latency_ms_median", 2),
                                            ("unmerged", "batch1", "rows_per_second", 1),
                                            ("unmerged", "eval_batch", "rows_per_second", 1),
                                            ("merged", "batch1", "latency_ms_median", 2)):
            mean, flagged = _speed(measured, setting, key, field)
            cols.append(_fmt(mean, digits) + (f" {CONTENDED}" if flagged else ""))
        ups = [summarise([getattr(r.inference, f) for r in measured]).mean
               for f in ("merged_speedup_batch1", "merged_speedup_eval_batch")]
        note = next((r.inference.merge for r in measured if r.inference.merge), None)
        rows.append([c.label, _fmt(summarise([r.inference.saved_mb for r in measured]).mean, 2), *cols,
                     *(["–", "–"] if ups[0] is None else [_fmt(u, 2) + "×" for u in ups]), note or ""])
    eval_bs = next((r.inference.unmerged.eval_batch.batch_size for c in cells for r in c.runs
                    if r.inference is not None and r.inference.unmerged is not None), None)
    return Table(f"inference__{name}", "Inference cost",
                 ["Method", "Saved (MB)", "Latency, batch 1 (ms)", "Rows/s, batch 1", f"Rows/s, batch {eval_bs}",
                  "Merged latency, batch 1 (ms)", "Merged speed-up, batch 1", f"Merged speed-up, batch {eval_bs}",
                  "Not merged because"],
                 rows,
                 caption="The task's forward pass on the test split's first rows (median latency of one batch; rows "
                         "per second over all timed batches), means over seeds; merged and unmerged timed side by "
                         "side in each run, alternating; ⚠: measured while the cores were shared.")


def metrics_table(name: str, cells: list[Cell], metric_names: list[str]) -> Table:
    rows = [[c.label, ", ".join(map(str, c.seeds)), *[metric_cell([r.test.metrics.get(m) for r in c.runs],
                                                                  bounds=bounds_of(c.first.task_type, m))
                                                      for m in metric_names],
             ", ".join(sorted({f"{r.training.lr:g} ({r.training.lr_source or 'config'})" for r in c.runs})),
             ", ".join(str(r.training.best_epoch) for r in c.runs)] for c in cells]
    return Table(f"metrics__{name}", "Test metrics (best checkpoint): mean ± std [95% CI] over seeds",
                 ["Method", "Seeds", *metric_names, "Learning rate", "Best epoch"], rows)


def pes_table(name: str, cells: list[Cell]) -> tuple[Table, list[tuple]]:
    """PES per cell. The published value is the mean over seeds only where every seed has one: a cell where any
    seed's V (or P) is at or below 1 is undefined, not averaged over the seeds where it happens to be defined."""
    rows, bars, means = [], [], []
    for c in cells:
        scores = []
        for r in c.runs:
            gb, kind = memory_for_pes(r)
            scores.append(pes(r.test.metrics, pes_weights(r), r.parameters.total / 1e6, gb,
                              percent_metrics(r.task_type)))
        every = all(s.value is not None for s in scores)
        value = summarise([s.value for s in scores]) if every else summarise([])
        variant = summarise([s.variant for s in scores])
        reasons = sorted({s.reason for s in scores if s.reason})
        if not every and any(s.value is not None for s in scores):
            reasons.append(f"undefined for {sum(s.value is None for s in scores)} of {len(scores)} seeds: not averaged "
                           "over the others")
        gb = summarise([memory_for_pes(r)[0] for r in c.runs]).mean
        rows.append([c.label, metric_cell([s.value for s in scores], bounds=POSITIVE) if every else "undefined",
                     metric_cell([s.variant for s in scores], bounds=POSITIVE), f"{c.first.parameters.total / 1e6:.2f}",
                     _fmt(gb, 3), "; ".join(reasons)])
        bars.append((f"{c.model}/{c.label}", value.mean, variant.mean, gb))
        means.append((summarise([s.weighted_metric for s in scores]).mean, c.first.parameters.total / 1e6, gb))
    for row, flags in zip(rows, pes_flags(means)):
        row.append("; ".join(flags))
    weights = pes_weights(cells[0].first)
    kind = memory_for_pes(cells[0].first)[1]
    return Table(f"pes__{name}", "Performance-Efficiency Score (Persian study, eq. 1)",
                 ["Method", "PES (published)", "PES variant", "P (M, total)", f"V (GB, {kind})", "Note", "Flag"], rows,
                 caption=f"PES = Σ W·M / (ln P · ln V · Σ W), weights {weights}; metrics on a 0-1 scale. The variant "
                         "uses ln(e + x) and is defined everywhere. Flags: V below e GB, where a 1% error in memory "
                         "moves the published PES by more than 1% (|∂ ln PES / ∂ ln V| = 1 / ln V > 1); a ranking "
                         "that flips when any method's memory is 5% higher or lower (PES then ranks memory "
                         "measurement noise, not methods)."), bars


def per_seed_table(name: str, cells: list[Cell], metric: str) -> Table:
    """The validation metric on test, per seed, beside the mean over seeds."""
    seeds = sorted({s for c in cells for s in c.seeds})
    rows = []
    for c in cells:
        by_seed = {r.seed: r.test.metrics.get(metric) for r in c.runs}
        rows.append([c.label, *[_fmt(by_seed.get(s)) for s in seeds], _fmt(summarise(list(by_seed.values())).mean)])
    return Table(f"seeds__{name}", f"Test {metric} per seed", ["Method", *[f"seed {s}" for s in seeds], "Mean"], rows)


def comparison_table(name: str, decided: list[Decided], correction: str) -> Table:
    rows = []
    for d in decided:
        r, k = d.result, points(d.scale)
        rows.append([d.cell.label, f"{r.difference * k:+.2f}",
                     f"[{r.low * k:+.2f}, {r.high * k:+.2f}]" + (" ✂" if r.clipped else "") if r.seed_aware else "–",
                     "–" if r.pooled is None else f"[{r.pooled[0] * k:+.2f}, {r.pooled[1] * k:+.2f}]",
                     f"{r.p:.3g}", f"{d.p_adjusted:.3g}",
                     "–" if d.p_equivalence_adjusted is None else f"{d.p_equivalence_adjusted:.3g}"
                     + (" (cannot be shown)" if d.undecidable else ""), d.words,
                     ", ".join(f"{s}: {(m - b) * k:+.2f}" for s, m, b in r.per_seed) or "unpaired seeds"])
    metric, k = decided[0].result.metric, points(decided[0].scale)
    unit = "points" if k != 1 else metric
    margin = decided[0].result.margin
    clusters = decided[0].result.n_clusters
    return Table(f"comparisons__{name}", f"Paired comparisons: {metric}, method − baseline ({unit})",
                 ["Method", "Δ", "95% CI (seeds + examples)", "95% CI (examples only)", "p", f"p ({correction})",
                  f"TOST p ({correction})", "Verdict", "Δ per seed"], rows,
                 caption="Seed-aware test: the seed-to-seed variance of the per-seed differences (pivoted on k − 1 "
                         "degrees of freedom) and the shared test set's variance, the seed × example interaction "
                         "counted once (see Notes). The examples-only interval holds the seeds' models fixed; with "
                         "fewer than 3 seeds on a side it is the only one, and the verdict is about those trained "
                         "models. " + (f"Test examples resampled in {clusters} clusters. " if clusters else "")
                         + f"{correction.capitalize()} correction over all comparisons in this report. Equivalence "
                         f"(TOST) margin ±{(margin or 0) * k:.2f} points. Verdicts: better / worse (corrected p < α; "
                         "'negligible' where also shown within the margin), equivalent (corrected TOST p < α), else "
                         "inconclusive. ✂: interval clipped to the metric's range.")


def verdict_summary(decided: list[Decided], settings) -> str:
    """One line: how many comparisons, how they were corrected, and what they decided (verdicts about the
    trained models only, where a side had fewer than 3 seeds, and verdicts whose cells carry a tuning diagnostic,
    counted apart)."""
    counts = {w: sum(d.verdict == w and d.result.seed_aware and d.decided for d in decided)
              for w in ("better", "worse", "equivalent", "inconclusive")}
    text = ", ".join(f"{n} {w}" for w, n in counts.items())
    tuned = [d for d in decided if not d.decided and d.result.seed_aware]
    if tuned:
        text += (f"; {len(tuned)} not decided: tuning (" + ", ".join(
            f"{n} {w}" for w in ("better", "worse", "equivalent", "inconclusive")
            if (n := sum(d.verdict == w for d in tuned))) + " as measured)")
    negligible = sum(d.negligible for d in decided)
    if negligible:
        text += f" ({negligible} of the better / worse within the margin: negligible)"
    models_only = [d for d in decided if not d.result.seed_aware]
    if models_only:
        text += (f"; {len(models_only)} about the trained models only (fewer than 3 seeds on a side: "
                 + ", ".join(f"{n} {w}" for w in ("better", "worse", "equivalent", "inconclusive")
                             if (n := sum(d.verdict == w for d in models_only))) + ")")
    return (f"Paired comparisons with {settings.baseline}: {len(decided)} in this report, {settings.correction} "
            f"correction at α = {settings.alpha:g}, equivalence margin ±{settings.equivalence_margin * 100:.1f} "
            f"points — {text}.")


def ranking_section(rep: "Report", groups: dict, alpha: float):
    """Average ranks of the methods every model x task block ran, the Friedman test and the Nemenyi critical
    difference, as a table and Demšar's diagram."""
    rep.heading("Ranking across tasks")
    blocks = list(groups)
    common = [c.label for c in groups[blocks[0]]] if blocks else []
    common = [m for m in common if all(any(c.label == m for c in groups[b]) for b in blocks)]
    if len(blocks) < 2 or len(common) < 2:
        rep.text(f"Not drawn: it needs at least two model × task blocks that share at least two methods (here "
                 f"{len(blocks)} block(s), {len(common)} shared method(s)).")
        return
    import numpy as np

    scores = np.array([[summarise([r.test.metrics.get(cells[0].first.training.validation_metric)
                                   for c in cells if c.label == m for r in c.runs]).mean for m in common]
                       for cells in (groups[b] for b in blocks)], dtype=float)
    if np.isnan(scores).any():
        rep.text("Not drawn: some block has no test score for its validation metric.")
        return
    higher = [declared(groups[b][0].first.task_type, groups[b][0].first.training.validation_metric).higher_is_better
              for b in blocks]  # a lower-is-better block (MSE) ranks its lowest first
    ranking = rank_methods(scores, common, [f"{m} · {t}" for m, t in blocks], alpha, higher)
    rows = [[m, f"{ranking.average[i]:.2f}", *[f"{r[i]:g}" for r in ranking.ranks]] for i, m in enumerate(common)]
    rows.sort(key=lambda row: float(row[1]))
    rep.table(Table("ranking", "Average rank (1 = best) on each block's validation metric, test mean over seeds",
                    ["Method", "Average rank", *ranking.blocks], rows,
                    caption=f"Friedman χ² = {ranking.chi2:.3f} (k = {len(common)} methods, N = {len(blocks)} blocks), "
                            f"p = {ranking.p:.3g}; Nemenyi critical difference at α = {alpha:g}: {ranking.cd:.2f} — "
                            "methods whose average ranks differ by less cannot be told apart. With few blocks the "
                            "critical difference is wide: a ranking, not a verdict."), level=3)
    rep.figure("ranking_cd", "critical-difference diagram", plots.critical_difference(ranking))


def breakdown_table(name: str, cells: list[Cell]) -> Table | None:
    """Test metrics per evaluation group (e.g. language) and per-type metrics (``entity_f1/PER``)."""
    groups = {g for c in cells for r in c.runs for g in (r.test.metrics_by_group or {})}
    typed = {k for c in cells for r in c.runs for k in r.test.metrics if "/" in k}
    if not groups and not typed:
        return None
    metric = cells[0].first.training.validation_metric
    rows = []
    for c in cells:
        for g in sorted(groups):
            rows.append([c.label, f"group {g}", metric,
                         metric_cell([(r.test.metrics_by_group or {}).get(g, {}).get(metric) for r in c.runs],
                                     bounds=bounds_of(c.first.task_type, metric))])
        for k in sorted(typed):
            rows.append([c.label, k.split("/", 1)[1], k.split("/", 1)[0],
                         metric_cell([r.test.metrics.get(k) for r in c.runs], bounds=bounds_of(c.first.task_type, k))])
    return Table(f"breakdown__{name}", "Breakdown (per evaluation group / per type)",
                 ["Method", "Group / type", "Metric", "Test"], rows)


def analysis_table(name: str, cells: list[Cell]) -> tuple[Table | None, list]:
    """Intruder dimensions and forgetting per method (means over seeds), where the runs computed them."""
    rows, bars = [], []
    for c in cells:
        got = [r.analysis or {} for r in c.runs]
        intr = [a.get("intruders") for a in got if a.get("intruders")]
        forg = [a.get("forgetting") for a in got if a.get("forgetting")]
        if not intr and not forg:
            continue
        skipped = "; ".join(sorted({x["skipped"] for x in intr + forg if "skipped" in x}))
        total = summarise([x.get("total") for x in intr if "skipped" not in x])
        changed = summarise([x.get("changed_matrices") for x in intr if "skipped" not in x])
        before = summarise([x.get("lm_loss_before") for x in forg if "skipped" not in x])
        after = summarise([x.get("lm_loss_after") for x in forg if "skipped" not in x])
        rise = summarise([x.get("increase") for x in forg if "skipped" not in x])
        top = next((f"top {x['top_k']}, cos < {x['threshold']}" for x in intr if "top_k" in x), "")
        low = summarise([x.get("lowest_similarity") for x in intr if "skipped" not in x])
        rows.append([c.label, _fmt(total.mean, 1), _fmt(changed.mean, 0), top, _fmt(low.mean, 3), _fmt(before.mean),
                     _fmt(after.mean),
                     metric_cell([x.get("increase") for x in forg if "skipped" not in x]), skipped])
        bars.append((c.label, total.mean, rise.mean))
    if not rows:
        return None, []
    return Table(f"analysis__{name}", "Analyses: intruder dimensions and forgetting",
                 ["Method", "Intruder dimensions", "Changed matrices", "Criterion", "Lowest similarity",
                  "LM loss before", "LM loss after", "Increase", "Note"], rows,
                 caption="Intruders: top singular vectors of a fine-tuned matrix whose cosine with every pre-trained "
                         "singular vector is below the threshold (Shuttleworth et al. 2024). Forgetting: the base "
                         "model's LM loss on held-out target-language text under the fine-tuned body; for prompt "
                         "methods, which change no weight, with their virtual tokens / prefixes active."), bars


DROPS = {"dropped_by_label_map": "dropped by the label map", "dropped_empty_sentences": "empty sentences dropped",
         "dropped_empty_pairs": "empty source/target pairs dropped", "answers_not_located": "answers not in their context",
         "held_out_of_training": "held out of training (train_groups)", "truncated_at_max_length": "reached max length"}


def data_table(name: str, cells: list[Cell]) -> Table:
    """What loading and preparing did to the data, per split: rows used, and everything dropped, capped,
    carved or truncated, with why (from the first run; runs of a cell share the data, by content hash)."""
    report = cells[0].first.data
    splits = ("train", "validation", "test")
    rows = [["rows used", *[str((report.get("rows") or {}).get(s, "–")) for s in splits]]]
    for key, what in DROPS.items():
        per = report.get(key)
        if per:
            rows.append([what, *[str(per.get(s, 0)) for s in splits]])
    for split, (before, after) in (report.get("capped") or {}).items():
        rows.append([f"capped ({split})", *[f"{before} → {after}" if s == split else "" for s in splits]])
    for split, frac in (report.get("carved") or {}).items():
        rows.append([f"carved from train ({split})", *[f"{frac:.0%}" if s == split else "" for s in splits]])
    if report.get("tags_not_in_train"):
        rows.append(["tags never in train", ", ".join(report["tags_not_in_train"]), "", ""])
    hashes = cells[0].first.provenance.get("data_sha256") or {}
    rows.append(["content sha256", *[hashes.get(s, "")[:12] for s in splits]])
    return Table(f"data__{name}", f"Data: {report.get('source', '')}", ["", *splits], rows)


def data_warnings(groups: dict) -> list[str]:
    """One line per model x task whose data lost or cut examples (label map, empty rows, answers not in their
    context, truncation): shown at the top of the report, not only in the per-task Data table."""
    lines = []
    for (model, task), cells in groups.items():
        report = cells[0].first.data
        rows = report.get("rows") or {}
        found = []
        for key, what in DROPS.items():
            per = {s: n for s, n in (report.get(key) or {}).items() if n}
            if per and key != "held_out_of_training":  # holding groups out is what the user asked for
                found.append(f"{what}: " + ", ".join(f"{s} {n}" for s, n in per.items()))
        if found:
            used = ", ".join(f"{s} {n}" for s, n in rows.items())
            lines.append(f"⚠ {model} · {task} — " + "; ".join(found) + (f" (rows used: {used})" if used else ""))
    return lines


def summary_table(task: str, groups: dict) -> Table:
    """One row per model x method for a task, ranked within each model by the validation metric on test."""
    cells = [c for (model, t), cs in groups.items() if t == task for c in cs]
    metric_names = reported_metrics(cells)
    rows = []
    for model in sorted({c.model for c in cells}):
        mine = [c for c in cells if c.model == model]
        metric = mine[0].first.training.validation_metric
        mine.sort(key=lambda c: -(summarise([r.test.metrics.get(metric) for r in c.runs]).mean or -1e9))
        for rank, c in enumerate(mine, 1):
            rows.append([model, str(rank), c.label, *[metric_cell([r.test.metrics.get(m) for r in c.runs],
                                                                  bounds=bounds_of(c.first.task_type, m))
                                                      for m in metric_names],
                         f"{c.first.parameters.trainable_pct:.3f}",
                         _fmt(summarise([r.memory.peak_memory_mb for r in c.runs]).mean, 0)])
    return Table(f"summary__{safe_name(task)}", f"{task}: test metrics per model × method",
                 ["Model", "Rank", "Method", *metric_names, "Trainable %", "Peak memory (MB)"], rows)


def provenance_table(results: list[RunResult]) -> Table:
    rows = []
    for r in results:
        p = r.provenance
        v = p["versions"]
        hw = p["hardware"]
        rows.append([r.slug, p["config_hash"][:12], str(p["seed"]), str(p.get("git_commit"))[:14],
                     ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "peft") if v.get(k)),
                     f"{hw.get('gpu') or hw.get('processor') or hw.get('machine')}, {hw.get('cpu_count')} CPU, "
                     f"{hw.get('ram_gb')} GB", (p.get("data_sha256") or {}).get("test", "")[:12], base_weights(r)])
    return Table("provenance", "Provenance", ["Run", "Config hash", "Seed", "git commit", "Versions", "Hardware",
                                              "Test data sha256", "Base weights"], rows)


def base_weights(r: RunResult) -> str:
    """What the run's base weights were, as far as it measured (``models.weight_levels``, a quantised load)."""
    if r.model_info.get("quantization"):
        return f"quantised on load ({describe(r.model_info['quantization'])})"
    levels = r.model_info.get("weight_levels")
    if not levels:
        return ""
    if not levels.get("dequantised"):
        return "floating point"
    return f"4-bit expanded to floats ({levels['layers_4bit']} of {levels['layers_checked']} layers checked)"


DEQUANTISED_NOTE = (
    "Base weights \"4-bit expanded\": in the layers counted, every run of 32 weights along a row takes at most 16 "
    "distinct values, which a layer trained in floating point never does: the checkpoint holds a 4-bit model (a GGUF "
    "q4 file, a packed 4-bit release) expanded to floats (in a mixed file such as q4_K_M the other layers are 5-6 "
    "bit). Every method starts from the rounded weights. Full fine-tuning updates all of them and can undo part of "
    "the rounding error; an adapter trains on top of the frozen rounded weights (QLoRA's setting). A gap between them "
    "can therefore be wider than it would be on the original full-precision checkpoint, in full fine-tuning's favour.")


class Report:
    """Collects sections in Markdown and HTML and writes the exports."""

    def __init__(self, out_dir: Path):
        self.out_dir, self.md, self.h = out_dir, ["# peftbench report", ""], []

    def heading(self, text: str, level: int = 2):
        self.md += [f"{'#' * level} {text}", ""]
        self.h.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, cls: str = ""):
        self.md += [text, ""]
        self.h.append(f"<p class='{cls}'>{html.escape(text)}</p>")

    def table(self, t: Table, level: int = 3):
        self.heading(t.title, level)
        self.md += [*markdown(t), ""]
        if t.caption:
            self.md += [f"*{t.caption}*", ""]
        self.h.append(html_table(t) + (f"<p><em>{html.escape(t.caption)}</em></p>" if t.caption else ""))
        (self.out_dir / f"{t.name}.csv").write_text(csv_text(t), encoding="utf-8")
        (self.out_dir / f"{t.name}.tex").write_text(latex(t), encoding="utf-8")

    def figure(self, stem: str, title: str, figure: tuple[bytes, bytes]):
        png, svg = figure
        (self.out_dir / f"{stem}.png").write_bytes(png)
        (self.out_dir / f"{stem}.svg").write_bytes(svg)
        self.md += [f"![{title}](report/{stem}.png)", ""]
        self.h.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">')


SETTINGS = REPORT_SETTINGS


def save_report_settings(results_dir: str | Path, settings: ReportSpec) -> None:
    """Keep a grid's ``report:`` beside its store (``peftbench run`` does), for later ``peftbench report`` calls."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    (Path(results_dir) / SETTINGS).write_text(settings.model_dump_json(indent=1), encoding="utf-8")


def report_settings(results_dir: str | Path, settings: ReportSpec | None = None, **overrides) -> ReportSpec:
    """The report's settings: ``overrides`` (the CLI's flags, None where not given) over ``settings`` (the
    grid's ``report:``) over the ones saved beside the store, else the defaults. Reads only."""
    path = Path(results_dir) / SETTINGS
    if settings is None and path.exists():
        settings = ReportSpec.model_validate_json(path.read_text(encoding="utf-8"))
    settings = settings or ReportSpec()
    given = {k: v for k, v in overrides.items() if v is not None}
    return settings.model_validate({**settings.model_dump(), **given}) if given else settings


def render(results_dir: str | Path, echo=print, baseline: str | None = None, resamples: int | None = None,
           settings: ReportSpec | None = None, **overrides) -> tuple[Path, Path]:
    results_dir = Path(results_dir)
    if not (results_dir / "peftbench.sqlite").exists():
        raise FileNotFoundError(f"no peftbench results in '{results_dir}' (expected peftbench.sqlite); run a grid first")
    settings = report_settings(results_dir, settings, baseline=baseline, resamples=resamples, **overrides)
    store = Store(results_dir)
    try:  # what the store holds, and finished run folders it does not know yet (read, not recorded: a report
        results, failures = store.results(with_config=True) + store.unrecorded(), store.failures()  # never writes)
    finally:
        store.close()
    out_dir = results_dir / "report"
    out_dir.mkdir(exist_ok=True)
    rep = Report(out_dir)
    if not results:
        rep.text("No finished runs.")
    tunings: dict = {}
    results, sweep_rows = select_sweeps(results, tunings)
    groups = build_cells(results)
    warnings = data_warnings(groups)
    if warnings:
        rep.heading("Data warnings")
        for line in warnings:
            rep.text(line, "warning")
    for task in sorted({t for _, t in groups}):
        rep.table(summary_table(task, groups), level=2)
    found, skipped = {}, {}
    resamples = resamples_for(settings.resamples)
    for key, cells in groups.items():  # every comparison first: the correction is over all of them
        found[key], skipped[key] = compare(cells, settings.baseline, resamples, settings.equivalence_margin)
        if settings.exclude_collapsed:
            found[key] += without_collapsed(cells, settings, resamples)
    flat = [(key, x) for key, xs in found.items() for x in xs]
    decided_all = decide([x for _, x in flat], settings.correction, settings.alpha)
    decided_all = [with_diagnostics(d, groups[key], settings.baseline, tunings) for (key, _), d in zip(flat, decided_all)]
    decided: dict = {}
    for (key, _), d in zip(flat, decided_all):
        decided.setdefault(key, []).append(d)
    if flat:
        rep.text(verdict_summary(decided_all, settings), "verdict")
        for d in decided_all:
            if d.undecidable:
                r = d.result
                rep.text(f"{d.cell.model} · {d.cell.task} · {d.cell.label}: equivalence within ±{r.margin * points(r.scale):.2f} "
                         f"cannot be shown with this test set at {settings.correction}'s first step — its examples "
                         f"alone allow a TOST p of {r.equivalence_floor:.3g} at best (a zero difference, no seed "
                         f"variance); more seeds cannot change that, more test examples or a wider margin can.",
                         "warning")
    pes_bars: dict[str, list] = {}
    for (model, task), cells in groups.items():
        name = f"{safe_name(model)}__{safe_name(task)}"
        first = cells[0].first
        metric_names = reported_metrics(cells)
        metric = first.training.validation_metric
        body_start = len(rep.h)
        rep.heading(f"{model} · {task}")
        seeds = sorted({s for c in cells for s in c.seeds})
        rep.text(f"Seeds: {', '.join(map(str, seeds))}. Device: {first.provenance['hardware']['device']}.")
        rep.table(data_table(name, cells))
        rep.table(resources_table(name, cells))
        fresh = {m: n for c in cells for r in c.runs for m, n in (r.model_info.get("newly_initialised") or {}).items()}
        if fresh:
            rep.text("Created at random on load (the checkpoint does not hold them) and trained and saved by every "
                     "method, as the task head is: " + ", ".join(f"{m} ({n:,} parameters)" for m, n in sorted(fresh.items()))
                     + ".")
        cost = inference_table(name, cells)
        if cost:
            rep.table(cost)
        rep.table(metrics_table(name, cells, metric_names))
        if len(seeds) > 1:
            rep.table(per_seed_table(name, cells, metric))
        table, bars = pes_table(name, cells)
        rep.table(table)
        pes_bars.setdefault(task, []).extend(bars)
        if decided.get((model, task)):
            base_label = next(c.label for c in cells if c.method_name == settings.baseline or c.label == settings.baseline)
            rep.table(comparison_table(name, decided[(model, task)], settings.correction))
            for d in decided[(model, task)]:
                rep.text(verdict(d, base_label, settings.correction), "verdict")
        flagged = diagnostics_table(name, cells, tunings)
        if flagged:
            rep.table(flagged)
        budget = budget_table(name, cells, tunings)
        if budget:
            rep.table(budget)
            metric_name, sign, each = budgets(cells, tunings)
            rep.figure(f"budget__{name}", "expected best validation score against the tuning budget",
                       plots.budget(f"{model} · {task}", metric_name, sign, each))
        for cell, why in skipped.get((model, task), []):
            rep.text(f"{cell.label}: not compared with {settings.baseline} — {why}", "warning")
        extra = breakdown_table(name, cells)
        if extra:
            rep.table(extra)
        table, bars = analysis_table(name, cells)
        if table:
            rep.table(table)
            rep.figure(f"analysis__{name}", "intruder dimensions and forgetting",
                       plots.analyses(f"{model} · {task}", bars))
        rep.heading("Learning curves", 3)
        rep.figure(f"curves__{name}", "learning curves", plots.curves(cells, metric))
        front = [{"label": c.label, "metric": summarise([r.test.metrics.get(metric) for r in c.runs]).mean,
                   "memory_mb": summarise([r.memory.peak_memory_mb for r in c.runs]).mean,
                   "train_seconds": summarise([r.timing.train_seconds for r in _clean(c.runs)[0]]).mean,
                   "trainable": c.first.parameters.trainable,
                   "latency_ms": _speed(c.runs, "unmerged", "batch1", "latency_ms_median")[0]} for c in cells]
        rep.heading("Quality against cost", 3)
        rep.figure(f"pareto__{name}", "Pareto fronts",
                   plots.pareto(task, metric, front, declared(cells[0].first.task_type, metric).higher_is_better))
        rep.h.insert(body_start, f"<section class='cell' data-key='{html.escape(f'{model} {task} ' + ' '.join(c.label for c in cells))}'>")
        rep.h.append("</section>")
    if groups:
        ranking_section(rep, groups, settings.alpha)
    for task, bars in sorted(pes_bars.items()):
        rep.heading(f"PES · {task}")
        rep.figure(f"pes__{safe_name(task)}", f"PES {task}", plots.pes_bars(task, bars))
    if sweep_rows:
        rep.heading("Sweeps")
        rep.text("Only the chosen setting's test scores appear above; every run is in the store. The settings are "
                 "compared on validation only, by the mean best validation score over the seeds every setting ran "
                 "(a staged sweep, `sweep.seeds`, runs its later seeds at the chosen setting only). An optuna search "
                 "(`sweep.optuna`) lists its trials in the order they ran; a trial the median pruner stopped is "
                 "never chosen.")
        rep.table(Table("sweeps", "Sweeps", ["Model", "Task", "Method", "Setting", "Mean best validation",
                                             "Runs", ""], sweep_rows))
    if failures:
        rep.table(Table("failures", "Runs that did not finish", ["Run", "Status", "Error"], [list(f) for f in failures]),
                  level=2)
    rep.table(provenance_table(results), level=2)
    if any((r.model_info.get("weight_levels") or {}).get("dequantised") for r in results):
        rep.text(DEQUANTISED_NOTE)
    rep.heading("Notes")
    for note in NOTES:
        rep.text(f"- {note}")
    md_path, html_path = results_dir / "report.md", results_dir / "report.html"
    md_path.write_text("\n".join(rep.md), encoding="utf-8")
    html_path.write_text(page("\n".join(rep.h)), encoding="utf-8")
    echo(f"wrote {md_path} and {html_path} ({len(results)} run(s), {len(failures)} unfinished); tables as CSV and "
         f"LaTeX in {out_dir}")
    return md_path, html_path


NOTES = [
    "A row is a cell: runs whose resolved configs are identical except for the seed. Runs of one method with other "
    "differences are separate rows, labelled with what differs.",
    "Metrics: mean ± sample standard deviation over seeds and a 95% t-interval, clipped to the metric's range where "
    "it reaches past it (✂: e.g. an accuracy interval past 1); '(1 seed)' marks single runs.",
    "Paired comparisons (report/statistics.seed_aware_test): the difference is the mean over seeds of method − "
    "baseline on the whole test set. Its variance carries the seed-to-seed variance of the per-seed differences "
    "(S², k − 1 degrees of freedom) and the shared test set's, estimated from the examples (resampled as clusters "
    "where the data names them: data.cluster, span QA's passages) with the seed × example interaction counted once; "
    "exact for means of per-example scores (accuracy, QA F1), from report.resamples draws of the test set otherwise. "
    "The interval and p-values come from a generalized pivotal quantity (S² pivoted on its chi-square, the example "
    "part as known), which simulations (docs/statistics.md) show covers 94.7–97.8% at 3–10 seeds and is never liberal; "
    "the percentile two-stage bootstrap used before covered 83–91% at 3 seeds where seeds vary. With fewer than 3 seeds on a side "
    "the seed variance is not estimated: the test is the examples-only one and its verdict is about those trained "
    "models. The p-values of every comparison in the report are corrected together (Holm unless the grid's "
    "report.correction says otherwise). 'equivalent' needs evidence: the TOST p-value (the difference lies within "
    "±report.equivalence_margin), corrected likewise, below α; a better / worse also shown within the margin is "
    "'negligible'; a difference neither shown nor excluded is 'inconclusive'.",
    "PES as published: P = total parameters in millions, V = peak memory in GB (GPU allocated on CUDA; on CPU the "
    "process's peak RSS above its baseline before data and model were loaded); undefined where P or V ≤ 1. Metrics "
    "that their task declares in percent (e.g. span QA's exact match and F1, BLEU, chrF) enter PES divided by 100.",
    "Parameter counts include the task head; peak memory and times are measured by each run in its own process. "
    "A CPU run whose process got less than 70% of its threads' time while training is marked contended (⚠): "
    "its times are not averaged with clean runs'.",
]
