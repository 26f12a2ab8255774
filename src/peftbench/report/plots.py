"""Figures (matplotlib, Agg): learning curves, the PES bar chart per task (the study's Figure 1) and Pareto
fronts of the task metric against peak memory, train time and trainable parameters. Each figure is returned
as PNG and SVG bytes; the renderer embeds the PNG and writes both files."""
from __future__ import annotations

import io

STYLES = ["-o", "--s", "-.^", ":D", "-v", "--P", "-.X", ":*"]  # every method visible where lines coincide


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig) -> tuple[bytes, bytes]:
    plt = _plt()
    out = []
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=100)
        out.append(buf.getvalue())
    plt.close(fig)
    return out[0], out[1]


def curves(cells, metric: str) -> tuple[bytes, bytes]:
    """Train (solid) and validation (dashed) loss, and the validation metric, per epoch; one colour and marker
    per method, markers offset so that coinciding lines stay visible."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, cell in enumerate(cells):  # one colour and marker per method; its seeds share them
        style, color = STYLES[k % len(STYLES)], f"C{k % 10}"
        marker = style.lstrip("-.:")
        offset = 0.03 * (k - len(cells) / 2)
        for i, r in enumerate(cell.runs):
            lab = (cell.label + (f" ({len(cell.runs)} seeds)" if len(cell.runs) > 1 else "")) if i == 0 else None
            trained = [c for c in r.curves if c["train_loss"] is not None]
            alpha = 1.0 if len(cell.runs) == 1 else 0.75
            axes[0].plot([c["epoch"] + offset for c in trained], [c["train_loss"] for c in trained], "-",
                         marker=marker, ms=4, color=color, alpha=alpha, label=lab)
            axes[0].plot([c["epoch"] + offset for c in r.curves], [c["val_loss"] for c in r.curves], "--",
                         marker=marker, ms=4, mfc="none", color=color, alpha=alpha)
            axes[1].plot([c["epoch"] + offset for c in r.curves], [c["val_metrics"].get(metric) for c in r.curves],
                         style, ms=4, color=color, alpha=alpha, label=lab)
    axes[0].set(title="loss (solid: train, dashed: validation)", xlabel="epoch")
    axes[1].set(title=f"validation {metric}", xlabel="epoch")
    axes[0].legend(fontsize=7, loc="best")
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig)


def pes_bars(task: str, rows: list[tuple]) -> tuple[bytes, bytes]:
    """(label, published PES or None, variant, V in GB) per model x method: solid bars of the published value
    where it is defined and V is at least e GB; hatched where the published value is undefined (the variant is
    drawn) or where V < e GB (the published value is drawn, but there PES moves by more than 1% for 1% of memory,
    so its bar ranks memory noise), each reason written in the figure."""
    from .pes import MEMORY_FLOOR_GB

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 1.5), 3.6))
    notes = set()
    for i, (label, value, variant, gb) in enumerate(rows):
        if value is not None and gb is not None and gb < MEMORY_FLOOR_GB:
            ax.bar(i, value, color="white", edgecolor="tab:blue", hatch="\\\\")
            notes.add("\\ hatched: V < e GB, PES dominated by ln V (memory noise)")
        elif value is not None:
            ax.bar(i, value, color="tab:blue")
        elif variant is not None:
            ax.bar(i, variant, color="white", edgecolor="tab:orange", hatch="//")
            notes.add("// hatched: variant (published formula undefined: P or V ≤ 1)")
    ax.set_xticks(range(len(rows)), [r[0] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set(title=f"PES · {task}", ylabel="PES")
    for j, note in enumerate(sorted(notes)):
        ax.text(0.99, 0.97 - 0.07 * j, note, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    fig.tight_layout()
    return _save(fig)


def pareto(task: str, metric: str, points: list[dict], higher: bool = True) -> tuple[bytes, bytes]:
    """The metric against peak memory, train time, trainable parameters and, where measured, batch-1 inference
    latency (log scale where a cost spans decades); the Pareto front (no other point is cheaper and better) is
    drawn as a step line. points: label, metric, memory_mb, train_seconds, trainable, latency_ms."""
    plt = _plt()
    axes_spec = [("memory_mb", "peak memory (MB)"), ("train_seconds", "train time (s)"), ("trainable", "trainable parameters")]
    if any(p.get("latency_ms") for p in points):  # train.inference_cost measured
        axes_spec.append(("latency_ms", "inference latency, batch 1 (ms)"))
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(4 * len(axes_spec), 3.6))
    for ax, (key, xlabel) in zip(axes, axes_spec):
        pts = [p for p in points if p.get(key) and p.get("metric") is not None]
        for p in pts:
            ax.scatter(p[key], p["metric"], s=25)
            ax.annotate(p["label"], (p[key], p["metric"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front([(p[key], p["metric"]) for p in pts], higher)
        if len(front) > 1:
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="grey", lw=1)
        xs = [p[key] for p in pts]
        wide = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20  # log scale only where it spans decades
        ax.set(xlabel=xlabel, ylabel=metric, xscale="log" if wide else "linear")
        if wide:
            from matplotlib.ticker import NullFormatter

            ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(f"{task}: {metric} against cost (grey: Pareto front)", fontsize=10)
    fig.tight_layout()
    return _save(fig)


def pareto_front(points: list[tuple[float, float]], higher: bool = True) -> list[tuple[float, float]]:
    """Points (cost, score) not dominated by a cheaper-or-equal and better-or-equal one, by increasing cost;
    ``higher``: whether the score is better higher (False: a lower-is-better metric, e.g. MSE)."""
    sign = 1 if higher else -1
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if sign * y > best:
            front.append((x, y))
            best = sign * y
    return front


def budget(title: str, metric: str, sign: int, each) -> tuple[bytes, bytes]:
    """The expected best validation score against the tuning budget, per method (``diagnostics.Budget``): against
    n trials, and against their compute (n times the method's compute a trial) where it was measured."""
    plt = _plt()
    timed = [b for b in each if b.seconds_per_trial]
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(10 if timed else 5.5, 3.6), squeeze=False)
    for k, b in enumerate(each):
        if not b.scores:
            continue
        n = list(range(1, len(b.scores) + 1))
        style, color = STYLES[k % len(STYLES)], f"C{k % 10}"
        axes[0][0].plot(n, b.expected(sign), style, ms=4, color=color, label=b.label)
        if timed and b.seconds_per_trial:
            axes[0][1].plot([x * b.seconds_per_trial / 3600 for x in n], b.expected(sign), style, ms=4, color=color,
                            label=b.label)
    axes[0][0].set(title=f"{title}: expected best validation {metric}", xlabel="tuning trials")
    if timed:
        axes[0][1].set(title="against tuning compute", xlabel="GPU- / CPU-hours")
    for ax in axes[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig)


def analyses(title: str, rows: list[tuple[str, float | None, float | None]]) -> tuple[bytes, bytes]:
    """(label, intruder dimensions, LM-loss increase) per method: two bar panels."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.2 * len(rows) + 3), 3.4))
    for ax, k, what in ((axes[0], 1, "intruder dimensions (total)"), (axes[1], 2, "LM loss increase (forgetting)")):
        shown = [(r[0], r[k]) for r in rows if r[k] is not None]
        ax.bar(range(len(shown)), [v for _, v in shown], color=[f"C{i % 10}" for i in range(len(shown))])
        ax.set_xticks(range(len(shown)), [lab for lab, _ in shown], rotation=30, ha="right", fontsize=8)
        ax.set(title=what)
        ax.axhline(0, color="black", lw=0.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig)


def critical_difference(ranking) -> tuple[bytes, bytes]:
    """Demšar's critical-difference diagram: methods on an axis of average rank (1 = best, at the left), a bar
    of length CD above it, and a thick line joining each maximal group of methods whose average ranks differ
    by less than CD (the Nemenyi test cannot tell them apart)."""
    plt = _plt()
    k = len(ranking.methods)
    order = sorted(range(k), key=lambda i: ranking.average[i])
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.3 * k))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(k + 2), 2)
    ax.axhline(0, color="black", lw=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", va="bottom", fontsize=8)
    ax.plot([1, 1 + ranking.cd], [1.3, 1.3], color="C3", lw=2)
    ax.text(1 + ranking.cd / 2, 1.45, f"CD = {ranking.cd:.2f} (Nemenyi, α = {ranking.alpha:g})", ha="center",
            va="bottom", fontsize=8, color="C3")
    for row, i in enumerate(order):
        x, y = ranking.average[i], -(row + 1)
        ax.plot([x, x], [0, y], color="grey", lw=0.8)
        ax.text(x + 0.05, y, f"{ranking.methods[i]} ({x:.2f})", va="center", fontsize=9)
    groups, level = [], 0
    for a in range(k):  # maximal runs of methods within CD of each other
        b = a
        while b + 1 < k and ranking.average[order[b + 1]] - ranking.average[order[a]] < ranking.cd:
            b += 1
        if b > a and not any(g[0] <= a and b <= g[1] for g in groups):
            groups.append((a, b))
    for a, b in groups:
        level += 1
        y = -0.25 * level
        ax.plot([ranking.average[order[a]] - 0.03, ranking.average[order[b]] + 0.03], [y, y], color="black", lw=3)
    ax.axis("off")
    ax.set_title(f"Average rank over {len(ranking.blocks)} model × task blocks; Friedman χ² = {ranking.chi2:.2f}, "
                 f"p = {ranking.p:.3g}", fontsize=9)
    fig.tight_layout()
    return _save(fig)
