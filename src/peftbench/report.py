"""Paper-style report from the store: Markdown + a self-contained HTML page.

Tables (as the studies print them): (1) per model and task, each method's trainable / non-trainable /
total parameters, peak memory and training cost; (2) test metrics per model x method (mean +- std over
seeds); the Performance-Efficiency Score; per-(model, task) learning curves.  Every number comes from
the stored runs; nothing is typed in.
"""
from __future__ import annotations

import base64
import html
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

from . import registry
from .config import safe_name
from .store import Store


def pes(metrics: dict, weights: dict, trainable_params: int, peak_memory_mb: float) -> float | None:
    """Performance-Efficiency Score of the Persian study (sec. 8.2):

        PES = sum_i W_i M_i / (log P * log V * sum_i W_i),  P = trainable parameters in millions,
                                                             V = peak memory in GB.

    The paper's logs go negative (or zero) below 1M parameters / 1 GB, which flips the ranking of the
    cheapest methods; we use log(1 + x) so the denominator stays positive and monotone.
    """
    used = {k: w for k, w in weights.items() if k in metrics and metrics[k] is not None}
    if not used or not trainable_params or not peak_memory_mb:
        return None
    score = sum(w * metrics[k] for k, w in used.items()) / sum(used.values())
    return score / (math.log1p(trainable_params / 1e6) * math.log1p(peak_memory_mb / 1024))


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(mean, std=None, digits=4):
    if mean is None:
        return "–"
    s = f"{mean:.{digits}f}"
    return s + (f" ± {std:.{digits}f}" if std is not None else "")


def _metric_cells(runs, metric_names) -> list[str]:
    """Test metrics over seeds, mean ± std, one cell per metric."""
    return [_fmt(*_mean_std([r["test"]["metrics"].get(m) for r in runs])) for m in metric_names]


def _int(n):
    return f"{int(n):,}"


def _task_info(task_type: str):
    try:
        cls = registry.get("task", task_type)
        return list(cls.metric_names), dict(cls.pes_weights)
    except ValueError:
        return [], {}


def select_sweeps(results: list[dict]) -> tuple[list[dict], list[list[str]]]:
    """Learning-rate sweeps: per (model, task, method) with ``sweep``, keep the runs of the learning rate whose
    mean best validation score over seeds is highest; the others stay in the store and are listed."""
    kept, rows = [], []
    swept: dict = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.get("sweep"):
            swept[(r["model"], r["task"], r["method"])][r["training"]["lr"]].append(r)
        else:
            kept.append(r)
    for (model, task, method), by_lr in sorted(swept.items()):
        score = {lr: statistics.fmean(x["training"]["best_validation"] for x in runs) for lr, runs in by_lr.items()}
        best = max(score, key=score.get)
        kept += by_lr[best]
        metric = by_lr[best][0]["training"]["validation_metric"]
        for lr in sorted(by_lr):
            rows.append([model, task, method, f"{lr:g}", f"{metric} {score[lr]:.4f}", str(len(by_lr[lr])),
                         "chosen" if lr == best else ""])
    return kept, rows


def build_tables(results: list[dict]) -> dict:
    """Group runs by (model, task) and method; aggregate over seeds."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    order = registry.names("method")
    results = sorted(results, key=lambda r: (order.index(r["method_name"]) if r["method_name"] in order else len(order),
                                             r["method"], r["seed"]))
    for r in results:
        groups[(r["model"], r["task"])][r["method"]].append(r)
    return groups


def _curves_png(runs_by_method: dict, metric: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for method, runs in runs_by_method.items():
        for r in runs:
            ep = [c["epoch"] for c in r["curves"]]
            lab = f"{method}" + (f" s{r['seed']}" if len(runs) > 1 else "")
            trained = [c for c in r["curves"] if c["train_loss"] is not None]
            line, = axes[0].plot([c["epoch"] for c in trained], [c["train_loss"] for c in trained], "-o", ms=3,
                                 label=f"{lab} train")
            axes[0].plot(ep, [c["val_loss"] for c in r["curves"]], "--", color=line.get_color(), label=f"{lab} val")
            axes[1].plot(ep, [c["val_metrics"].get(metric) for c in r["curves"]], "-o", ms=3, color=line.get_color(), label=lab)
    axes[0].set(title="loss (solid: train, dashed: validation)", xlabel="epoch")
    axes[1].set(title=f"validation {metric}", xlabel="epoch")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def render(results_dir: str | Path, echo=print) -> tuple[Path, Path]:
    results_dir = Path(results_dir)
    if not (results_dir / "peftbench.sqlite").exists():
        raise FileNotFoundError(f"no peftbench results in '{results_dir}' (expected peftbench.sqlite); run a grid first")
    store = Store(results_dir)
    try:
        store.sync()
        results, failures = store.results(), store.failures()
    finally:
        store.close()
    out_dir = results_dir / "report"
    out_dir.mkdir(exist_ok=True)
    md: list[str] = ["# peftbench report", ""]
    h: list[str] = []
    if not results:
        md.append("No finished runs.")
    results, sweep_rows = select_sweeps(results)
    groups = build_tables(results)
    md_s, h_s = _summary(groups)
    md += md_s
    h += h_s
    for (model, task), by_method in sorted(groups.items()):
        any_run = next(iter(by_method.values()))[0]
        metric_names, weights = _task_info(any_run["task_type"])
        weights = any_run.get("pes_weights") or weights
        seeds = sorted({r["seed"] for runs in by_method.values() for r in runs})
        mem_kind = any_run["memory"]["peak_memory_kind"]
        mem_label = "Peak GPU mem (MB)" if mem_kind == "cuda_allocated" else "Peak RSS (MB)"
        md += [f"## {model} · {task}", "", f"Seeds: {', '.join(map(str, seeds))}. Device: "
               f"{any_run['provenance']['hardware']['device']}.", ""]
        # table 1: parameters and resources
        head1 = ["Method", "Trainable", "Non-trainable", "Total", "Trainable %", mem_label, "Train time (s)",
                 "Train samples/s", "Train tokens/s", "Epochs run"]
        rows1 = []
        for method, runs in by_method.items():
            p = runs[0]["parameters"]
            mem = _mean_std([r["memory"]["peak_memory_mb"] for r in runs])
            tt = _mean_std([r["timing"]["train_seconds"] for r in runs])
            sps = _mean_std([r["timing"]["train_samples_per_second"] for r in runs])
            tps = _mean_std([r["timing"]["train_tokens_per_second"] for r in runs])
            ep = _mean_std([r["training"]["epochs_run"] for r in runs])
            rows1.append([method, _int(p["trainable"]), _int(p["non_trainable"]), _int(p["total"]),
                          f"{p['trainable_pct']:.3f}", _fmt(mem[0], None, 0), _fmt(tt[0], tt[1], 1),
                          _fmt(sps[0], None, 1), _fmt(tps[0], None, 0), _fmt(ep[0], None, 1)])
        # table 2: test metrics (+ PES)
        head2 = ["Method"] + metric_names + ["PES", "Learning rate", "Best epoch"]
        rows2 = []
        for method, runs in by_method.items():
            row = [method, *_metric_cells(runs, metric_names)]
            row.append(_fmt(*_mean_std([pes(r["test"]["metrics"], weights, r["parameters"]["trainable"],
                                            r["memory"]["peak_memory_mb"]) for r in runs])))
            row.append(", ".join(sorted({f"{r['training']['lr']:g} ({r['training'].get('lr_source', 'config')})"
                                         for r in runs})))
            row.append(", ".join(str(r["training"]["best_epoch"]) for r in runs))
            rows2.append(row)
        extra = _breakdown_rows(by_method)
        md += ["### Parameters and resources", "", *_md_table(head1, rows1), "", "### Test metrics (best checkpoint)",
               "", *_md_table(head2, rows2), ""]
        if extra:
            md += ["### Breakdown (per evaluation group / per type)", "", *_md_table(*extra), ""]
        metric = any_run["training"]["validation_metric"]
        png = _curves_png(by_method, metric)
        fname = f"curves__{safe_name(model)}__{safe_name(task)}.png"
        (out_dir / fname).write_bytes(png)
        md += ["### Learning curves", "", f"![learning curves](report/{fname})", ""]
        h += [f"<h2>{html.escape(model)} · {html.escape(task)}</h2>",
              f"<p>Seeds: {', '.join(map(str, seeds))}. Device: {html.escape(any_run['provenance']['hardware']['device'])}.</p>",
              "<h3>Parameters and resources</h3>", _html_table(head1, rows1),
              "<h3>Test metrics (best checkpoint)</h3>", _html_table(head2, rows2),
              *(["<h3>Breakdown (per evaluation group / per type)</h3>", _html_table(*extra)] if extra else []),
              "<h3>Learning curves</h3>", f'<img alt="learning curves" src="data:image/png;base64,{base64.b64encode(png).decode()}">']
    notes = ["PES = Σ W·M / (log(1+P) · log(1+V) · Σ W), P = trainable parameters (millions), V = peak memory (GB; "
             "GPU allocated on CUDA, process peak RSS on CPU); weights per task type as in the Persian study.",
             "Parameter counts include the task head; peak memory is measured by each run in its own process."]
    if sweep_rows:
        head = ["Model", "Task", "Method", "Learning rate", "Mean best validation", "Runs", ""]
        md += ["## Learning-rate sweeps", "", "Only the chosen learning rate's test scores appear above; every run is "
               "in the store.", "", *_md_table(head, sweep_rows), ""]
        h += ["<h2>Learning-rate sweeps</h2>", _html_table(head, sweep_rows)]
    if failures:
        md += ["## Runs that did not finish", "", *_md_table(["Run", "Status", "Error"], [list(f) for f in failures]), ""]
        h += ["<h2>Runs that did not finish</h2>", _html_table(["Run", "Status", "Error"], [list(f) for f in failures])]
    prov = _provenance_rows(results)
    md += ["## Provenance", "", *_md_table(["Run", "Config hash", "Seed", "git commit", "Versions", "Hardware"], prov), "",
           "## Notes", "", *[f"- {n}" for n in notes], ""]
    h += ["<h2>Provenance</h2>", _html_table(["Run", "Config hash", "Seed", "git commit", "Versions", "Hardware"], prov),
          "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    md_path, html_path = results_dir / "report.md", results_dir / "report.html"
    md_path.write_text("\n".join(md), encoding="utf-8")
    html_path.write_text(_page("\n".join(h)), encoding="utf-8")
    echo(f"wrote {md_path} and {html_path} ({len(results)} run(s), {len(failures)} unfinished)")
    return md_path, html_path


def _breakdown_rows(by_method):
    """(head, rows): test metrics per evaluation group (e.g. language) and per-type metrics (``name/type``)."""
    rows, groups, typed = [], set(), set()
    for runs in by_method.values():
        for r in runs:
            groups |= set(r["test"].get("metrics_by_group") or {})
            typed |= {k for k in r["test"]["metrics"] if "/" in k}
    if not groups and not typed:
        return None
    metric = next(iter(by_method.values()))[0]["training"]["validation_metric"]
    for method, runs in by_method.items():
        for g in sorted(groups):
            vals = [(r["test"].get("metrics_by_group") or {}).get(g, {}).get(metric) for r in runs]
            rows.append([method, f"group {g}", metric, _fmt(*_mean_std(vals))])
        for k in sorted(typed):
            rows.append([method, k.split("/", 1)[1], k.split("/", 1)[0],
                         _fmt(*_mean_std([r["test"]["metrics"].get(k) for r in runs]))])
    return ["Method", "Group / type", "Metric", "Test (mean ± std)"], rows


def _summary(groups) -> tuple[list[str], list[str]]:
    """Per task, one table with a row per model x method, ranked within each model by the task's
    validation metric on test: the test metrics, trainable share and memory."""
    tasks = sorted({task for _, task in groups})
    md, h = [], []
    for task in tasks:
        cells = [(model, by_method) for (model, t), by_method in sorted(groups.items()) if t == task]
        any_run = next(iter(cells[0][1].values()))[0]
        metric_names, _ = _task_info(any_run["task_type"])
        head = ["Model", "Rank", "Method"] + metric_names + ["Trainable %", "Peak memory (MB)"]
        rows = []
        for model, by_method in cells:
            def key(item):
                m = item[1][0]["training"]["validation_metric"]
                v = _mean_std([r["test"]["metrics"].get(m) for r in item[1]])[0]
                return -(v if v is not None else -math.inf)
            for rank, (method, runs) in enumerate(sorted(by_method.items(), key=key), 1):
                rows.append([model, str(rank), method, *_metric_cells(runs, metric_names)] +
                            [f"{runs[0]['parameters']['trainable_pct']:.3f}",
                             _fmt(_mean_std([r["memory"]["peak_memory_mb"] for r in runs])[0], None, 0)])
        md += [f"## {task}: test metrics per model × method", "", *_md_table(head, rows), ""]
        h += [f"<h2>{html.escape(task)}: test metrics per model × method</h2>", _html_table(head, rows)]
    return md, h


def _provenance_rows(results):
    rows = []
    for r in results:
        p = r["provenance"]
        v = p["versions"]
        versions = ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "peft") if v.get(k))
        hw = p["hardware"]
        hw_s = f"{hw.get('gpu') or hw.get('processor') or hw.get('machine')}, {hw.get('cpu_count')} CPU, {hw.get('ram_gb')} GB"
        rows.append([r["slug"], p["config_hash"][:12], str(p["seed"]), str(p.get("git_commit"))[:14], versions, hw_s])
    return rows


def _md_table(head, rows):
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *["| " + " | ".join(str(c) for c in row) + " |" for row in rows]]


def _html_table(head, rows):
    th = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _page(body):
    css = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}th,td{border:1px solid #ccc;"
           "padding:.3em .6em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
           "img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>peftbench report</title><style>{css}</style>"
            f"</head><body><h1>peftbench report</h1>{body}</body></html>")
