"""The published twins' verdicts recomputed with the calibrated seed-aware test, from what their reports printed.

    python bench/redecide_published.py          # prints the table and writes it into docs/results/README.md

The stores of the four published sittings are gone (they lived on machines that are not kept), so the
per-example predictions the test needs are not at hand. What each report printed is: the per-seed differences
(its comparisons CSV) and the examples-only 95% interval of their mean (a percentile interval over resampled test
examples, the models fixed). From these ``statistics.from_summaries`` runs the same pivot as ``seed_aware_test``
with v_ex = (interval width / 3.92)^2 and without subtracting the seed x example interaction (which needs the
examples): the variance is at least the one the full test would use, so a verdict here can only be more cautious.
Holm over each report's comparisons, as the report corrects. The re-decided twins (issue 31) will keep an
archive (``peftbench archive``) beside their reports, so this never depends on one machine again.
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
LINE = re.compile(r"^(?P<method>\S+) vs full: (?P<d>[-+]\d+\.\d+) (?P<metric>\w+).*?95% CI \[(?P<lo>[-+]\d+\.\d+), "
                  r"(?P<hi>[-+]\d+\.\d+)\].*?-> (?P<verdict>\w+) \((?P<k>\d+) paired seed\(s\) x (?P<n>\d+) examples"
                  r".*examples only: \[(?P<elo>[-+]\d+\.\d+), (?P<ehi>[-+]\d+\.\d+)\]")
MARGIN = 2.0  # points: every published report used the default ±2


def comparisons(twin: Path) -> list[dict]:
    out = []
    text = (twin / "report.md").read_text(encoding="utf-8")
    section = None
    per_seed = {}
    for path in sorted((twin / "report").glob("comparisons__*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                per_seed[(path.stem.split("__", 1)[1], row["Method"])] = [
                    float(x.split(": ")[1]) for x in row["Δ per seed"].split(", ")]
    for line in text.splitlines():
        if line.startswith("## ") and " · " in line:
            section = line[3:].strip()
        m = LINE.match(line)
        if m:
            model, task = section.split(" · ")
            key = (f"{safe(model)}__{safe(task)}", m["method"])
            out.append({"twin": twin.name, "cell": f"{model} · {task}", **m.groupdict(), "per_seed": per_seed[key]})
    return out


def safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from peftbench.report.statistics import adjust, from_summaries

    rows = ["| twin | cell | method | Δ (points) | per seed | old 95% CI → old verdict (Holm p) | calibrated 95% CI | "
            "p (Holm) | TOST p (Holm) | calibrated verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for twin in sorted(p for p in RESULTS.iterdir() if (p / "report.md").exists()):
        found = comparisons(twin)
        decided = []
        for c in found:
            v_ex = ((float(c["ehi"]) - float(c["elo"])) / 3.92) ** 2
            low, high, p, p_eq = from_summaries(c["per_seed"], v_ex, int(c["n"]), MARGIN)
            decided.append((c, low, high, p, p_eq))
        p_adj = adjust([x[3] for x in decided])
        eq_adj = adjust([x[4] for x in decided])
        old_holm = {}
        for line in (twin / "report.md").read_text(encoding="utf-8").splitlines():
            m = re.match(r"^(\S+) vs full: .*?holm (\S+);", line)
            if m:
                old_holm.setdefault(m[1], []).append(m[2])
        seen: dict = {}
        for (c, low, high, p, p_eq), pa, ea in zip(decided, p_adj, eq_adj):
            i = seen[c["method"]] = seen.get(c["method"], -1) + 1
            d = float(c["d"])
            word = ("worse" if d < 0 else "better") if pa < 0.05 else "equivalent" if ea < 0.05 else "inconclusive"
            if word in ("better", "worse") and ea < 0.05:
                word += ", but within ±2 (negligible)"
            changed = "" if word.split(",")[0] == c["verdict"] else " (changed)"
            seeds = ", ".join(f"{x:+.2f}" for x in c["per_seed"])
            rows.append(f"| {c['twin']} | {c['cell']} | {c['method']} | {d:+.2f} | {seeds} | [{c['lo']}, {c['hi']}] → "
                        f"{c['verdict']} ({old_holm[c['method']][i]}) | [{low:+.2f}, {high:+.2f}] | {p:.3g} ({pa:.3g}) | "
                        f"{p_eq:.3g} ({ea:.3g}) | **{word}**{changed} |")
    table = "\n".join(rows)
    print(table)
    readme = RESULTS / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = f"<!-- redecided -->\n{table}\n<!-- /redecided -->"
    if "<!-- redecided -->" in text:
        text = re.sub(r"<!-- redecided -->.*<!-- /redecided -->", lambda _: block, text, flags=re.S)
    else:
        text += "\n" + block + "\n"
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
