"""The report: cells pool seeds of one config only, intervals over seeds, paired verdicts against full
fine-tuning, PES as published, contended timings flagged, and every table exported as CSV and LaTeX."""
import csv
import json

import pytest

from conftest import toy_grid
from peftbench.config import load_grid
from peftbench.report import render
from peftbench.runner import run_grid
from peftbench.store import Store


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    from conftest import write_toy

    tmp = tmp_path_factory.mktemp("report")
    toy = write_toy(tmp / "toy.jsonl")
    out = tmp / "out"
    data = toy_grid(toy, out, models=["tiny:bert"], methods=["full", "lora"], epochs=2, threads=1)
    data["seeds"] = [1, 2, 3]
    summary = run_grid(load_grid(data=data), in_process=True, show_progress=False)
    assert summary.failed == []
    return out, data


def test_three_seeds_give_intervals_paired_verdicts_and_exports(three_seeds):
    out, _ = three_seeds
    md, page = render(out, echo=lambda *a: None, resamples=200)
    text = md.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| lora | 1, 2, 3 |"))
    assert " ± " in row and "[" in row  # mean ± std [95% CI]
    assert "lora vs full: " in text and "95% CI [" in text and "macro_f1 (x100)" in text
    assert "over seeds and examples; p = " in text and ", holm " in text and "within ±2.00" in text
    assert "3 paired seed(s) x 40 examples" in text and "### Test macro_f1 per seed" in text
    line = next(x for x in text.splitlines() if x.startswith("| lora | "))  # the comparison table's row
    assert "1: " in text.split("Δ per seed")[1] and "2: " in text.split("Δ per seed")[1]
    assert "Paired comparisons with full: 1 in this report, holm correction" in text
    verdicts = [x for x in text.splitlines() if x.startswith("lora vs full: ")]
    assert len(verdicts) == 1 and verdicts[0].split(" -> ")[1].split(" ")[0] in ("better", "worse", "equivalent",
                                                                                 "inconclusive")
    assert "no clear difference" not in text and "-> comparable" not in text
    assert "## Ranking across tasks" in text and "Not drawn: it needs at least two model × task blocks" in text
    assert "| Flag |" in text and "V < e GB" in text  # CPU memory of a tiny model: PES dominated by ln V
    assert line
    assert "PES (published)" in text and "undefined" in text  # tiny models: P < 1M
    assert "### Data: " in text and "| rows used | 324 | 36 | 40 |" in text and "| reached max length | 0 | 0 | 0 |" in text
    assert "| carved from train (validation) |  | 10% |  |" in text
    report = out / "report"
    with open(report / "metrics__bert__toy.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["Method", "Seeds", "accuracy"] and {r[0] for r in rows[1:]} == {"full", "lora"}
    tex = (report / "metrics__bert__toy.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex
    for stem in ("curves__bert__toy", "pareto__bert__toy", "pes__toy"):
        assert (report / f"{stem}.png").stat().st_size > 1000 and (report / f"{stem}.svg").exists()
    from peftbench.cli import main

    assert main(["report", str(out), "--baseline", "lora", "--resamples", "50"]) == 0
    from peftbench.report.compare import resamples_for

    # any chosen baseline; macro-F1 is no mean of per-example scores: its variances from at least 1,000 resamples
    assert "full vs lora: " in md.read_text() and f"{resamples_for(50)} resamples" in md.read_text()
    html = page.read_text()
    assert "class='sortable'" in html and "id='filter'" in html and html.count("data:image/png;base64,") >= 3


def test_report_settings_come_from_the_grid_and_the_command_line(three_seeds, tmp_path, capsys):
    """The grid's report: section is saved beside the store; `peftbench report` flags override it; bad values get
    one line naming the flag."""
    import shutil

    from peftbench.cli import main
    from peftbench.config import ReportSpec

    from peftbench.report.render import save_report_settings

    out = tmp_path / "copy"
    shutil.copytree(three_seeds[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    md, _ = render(out, echo=lambda *a: None, settings=ReportSpec(equivalence_margin=0.5, correction="bonferroni",
                                                                  resamples=100))
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.relative_to(out).parts[0]}
    assert {p: t for p, t in after.items() if not p.name.startswith("peftbench.sqlite")} == \
        {p: t for p, t in before.items() if p in after and not p.name.startswith("peftbench.sqlite")}  # reads only
    save_report_settings(out, ReportSpec(equivalence_margin=0.5, correction="bonferroni", resamples=100))  # as run does
    text = md.read_text()
    assert "bonferroni correction" in text and "within ±50.00" in text and "equivalent" in text.split("| Verdict |")[1]
    assert main(["report", str(out), "--correction", "none"]) == 0  # the saved margin stays, the correction changes
    text = md.read_text()
    assert "none correction" in text and "within ±50.00" in text and ", bonferroni" not in text
    capsys.readouterr()
    assert main(["report", str(out), "--correction", "hochberg"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--correction: 'hochberg' is not one of holm, bonferroni, none" in err[0]
    with pytest.raises(Exception, match="report.baseline: 'dora' is not a method of this grid; allowed: full, lora"):
        load_grid(data={**three_seeds[1], "report": {"baseline": "dora"}})


def test_ranking_across_blocks_draws_a_critical_difference_diagram(tmp_path):
    from peftbench.report.aggregate import Cell
    from peftbench.report.render import Report, ranking_section

    def cell(model, task, method, scores):
        runs = [{"seed": i, "test": {"metrics": {"accuracy": s}}, "training": {"validation_metric": "accuracy"}}
                for i, s in enumerate(scores)]
        return Cell(model, task, method, method, runs)

    table = {"t1": (0.9, 0.8, 0.5), "t2": (0.7, 0.72, 0.4), "t3": (0.85, 0.8, 0.6), "t4": (0.6, 0.5, 0.55)}
    groups = {("m", t): [cell("m", t, name, [v, v]) for name, v in zip(("full", "lora", "ia3"), vals)]
              for t, vals in table.items()}
    rep = Report(tmp_path)
    ranking_section(rep, groups, 0.05)
    text = "\n".join(rep.md)
    assert "| full | 1.25 | 1 | 2 | 1 | 1 |" in text  # ranks 1, 2, 1, 1
    assert "| ia3 | 2.75 |" in text and "Friedman χ² = " in text and "Nemenyi critical difference" in text
    assert (tmp_path / "ranking_cd.png").stat().st_size > 1000 and (tmp_path / "ranking.csv").exists()


def test_runs_with_different_configs_are_not_averaged_as_seeds(three_seeds, tmp_path):
    """Regression: re-running with train.epochs=1 into the same folder pooled the runs into one mean."""
    out, data = three_seeds
    data = json.loads(json.dumps(data))
    data["train"]["epochs"] = 1
    data["seeds"] = [1]
    data["methods"] = ["lora"]
    run_grid(load_grid(data=data), in_process=True, show_progress=False)
    text = render(out, echo=lambda *a: None, resamples=50)[0].read_text()
    assert "| lora [epochs=1] | 1 |" in text and "| lora [epochs=2] | 1, 2, 3 |" in text


def test_every_run_records_its_cpu_share_threads_load_and_data_hash(three_seeds):
    out, _ = three_seeds
    store = Store(out)
    results = store.results()
    cells = store.db.execute("SELECT DISTINCT cell FROM runs WHERE method='lora'").fetchall()
    store.close()
    for r in results:
        t = r.timing
        assert t.threads == 1 and t.train_cpu_seconds > 0 and 0 < t.cpu_share < 1.5
        assert isinstance(t.contended, bool) and t.load_max is not None
        assert set(r.provenance["data_sha256"]) == {"train", "validation", "test"}
    assert len({json.dumps(r.provenance["data_sha256"]) for r in results}) == 1  # same data, provably
    assert len(cells) >= 1


def test_contended_runs_are_flagged_and_kept_out_of_clean_timings():
    from peftbench.measure import Stopwatch, contention
    from peftbench.report.render import _clean
    from peftbench.result import RunResult

    class Dev:
        type = "cpu"

    clock = Stopwatch()
    clock.wall, clock.cpu, clock.loads = 10.0, 6.0, [3.9, 4.2]  # 2 threads got 0.6 cores on average
    c = contention(clock, 2, Dev())
    assert c["contended"] and "0.60 of its 2 threads" in c["reason"] and c["load_max"] == 4.2
    clock.cpu = 19.0
    assert not contention(clock, 2, Dev())["contended"]
    runs = [RunResult.load({"timing": {"contended": True, "train_seconds": 50}}),
            RunResult.load({"timing": {"contended": False, "train_seconds": 5}})]
    assert _clean(runs) == ([runs[1]], False) and _clean(runs[:1]) == (runs[:1], True)


def test_confusion_metrics_equal_scikit_learn_on_random_resamples():
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score

    from peftbench.report.statistics import confusion_metric

    rng = np.random.default_rng(0)
    refs_fn = {"accuracy": accuracy_score, "mcc": matthews_corrcoef,
               "macro_f1": lambda r, p: f1_score(r, p, average="macro", zero_division=0),
               "macro_precision": lambda r, p: precision_score(r, p, average="macro", zero_division=0),
               "macro_recall": lambda r, p: recall_score(r, p, average="macro", zero_division=0)}
    for _ in range(100):
        k = int(rng.integers(2, 7))
        n = int(rng.integers(1, 40))
        refs = rng.integers(0, k, n)
        preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, k, n))
        for metric, ref in refs_fn.items():
            assert confusion_metric(preds, refs, metric, k) == pytest.approx(ref(refs, preds), abs=1e-12), metric


def test_data_losses_are_listed_as_warnings_at_the_top_of_the_report():
    from types import SimpleNamespace

    from peftbench.report.render import data_warnings
    from peftbench.result import RunResult

    qa = SimpleNamespace(first=RunResult.load({"data": {
        "rows": {"train": 32, "validation": 8, "test": 8}, "answers_not_located": {"train": 15, "validation": 0, "test": 2},
        "truncated_at_max_length": {"train": 4, "validation": 0, "test": 0}, "held_out_of_training": {"train": 9}}}))
    clean = SimpleNamespace(first=RunResult.load({"data": {"rows": {"train": 10}, "dropped_by_label_map": {"train": 0}}}))
    assert data_warnings({("m", "rc"): [qa], ("m", "clean"): [clean]}) == [
        "⚠ m · rc — answers not in their context: train 15, test 2; reached max length: train 4 "
        "(rows used: train 32, validation 8, test 8)"]


def test_an_archive_renders_the_same_verdicts_anywhere(three_seeds, tmp_path, capsys):
    """`peftbench archive` keeps configs, results and test predictions (no weights) in one .jsonl.gz; `peftbench
    report ARCHIVE` unpacks it into a results folder and renders the same comparisons as the original store."""
    from peftbench.cli import main
    from peftbench.report.aggregate import build_cells
    from peftbench.report.compare import compare

    out, _ = three_seeds
    arc = tmp_path / "twin.jsonl.gz"
    assert main(["archive", str(out), str(arc)]) == 0
    assert arc.stat().st_size < 200_000 and "run(s) ->" in capsys.readouterr().out
    assert main(["report", str(arc), "--into", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "report.md").exists()

    def comparisons(root):
        s = Store(root)
        try:
            groups = build_cells(s.results(with_config=True))
        finally:
            s.close()
        found, skipped = compare(groups[("bert", "toy")], "full", 1000, 0.02)
        return skipped, [(c.label, r.difference, r.p, r.low, r.high) for c, r in found]

    assert comparisons(out) == comparisons(tmp_path / "back")
    assert main(["report", str(arc), "--into", str(tmp_path / "back")]) == 0  # the same archive again: fine
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    assert main(["report", str(tmp_path / "bad.jsonl.gz")]) == 2
    assert "cannot be read as a peftbench archive" in capsys.readouterr().err
    assert main(["archive", str(tmp_path / "nothing"), str(arc)]) == 2


def test_pes_is_undefined_for_a_cell_where_any_seed_is():
    """Two seeds above 1 GB, one below: the published PES is not averaged over the two, the cell is undefined."""
    from peftbench.report.aggregate import Cell
    from peftbench.report.render import pes_table
    from peftbench.result import RunResult

    def run(seed, mb):
        return RunResult.load({"seed": seed, "task_type": "classification", "model": "m", "method": "lora",
                               "task": "t", "parameters": {"total": 300_000_000, "trainable": 1, "non_trainable": 1},
                               "memory": {"peak_memory_mb": mb, "peak_memory_kind": "cuda_allocated"},
                               "test": {"metrics": {"accuracy": 0.8, "macro_precision": 0.8, "macro_recall": 0.8,
                                                    "macro_f1": 0.8}},
                               "training": {"validation_metric": "macro_f1"}})
    cell = Cell("m", "t", "lora", "lora", [run(1, 3000), run(2, 3200), run(3, 800)])
    table, bars = pes_table("x", [cell])
    row = table.rows[0]
    assert row[1] == "undefined" and "undefined for 1 of 3 seeds: not averaged over the others" in row[5]
    assert bars[0][1] is None and bars[0][2] is not None  # drawn hatched, as the variant
    whole = Cell("m", "t", "lora", "lora", [run(1, 3000), run(2, 3200)])
    assert pes_table("x", [whole])[0].rows[0][1] != "undefined"


def test_verdict_words_negligible_models_only_and_undecidable():
    from peftbench.report.aggregate import Cell
    from peftbench.report.compare import decide, verdict
    from peftbench.report.statistics import Comparison

    cell = Cell("m", "t", "lora", "lora")
    # significant and inside the margin: worse, but negligible
    small = Comparison("accuracy", -0.005, -0.008, -0.002, 0.001, 0.001, 0.02, 5000, (5, 5), True, 0,
                       equivalence_floor=1e-9)
    d = decide([(cell, small)])[0]
    assert d.verdict == "worse" and d.negligible and d.words == "worse, but within ±2.00 (negligible)"
    # two seeds: the examples-only test decides about those models only
    two = Comparison("accuracy", -0.05, -0.08, -0.02, 0.001, 0.9, 0.02, 500, (2, 2), True, 0, seed_aware=False,
                     equivalence_floor=0.01)
    d = decide([(cell, two)])[0]
    assert d.words == "worse (these trained models only: seed variance not measured)"
    assert "over examples only" in verdict(d, "full")
    # a tiny test set: equivalence within ±2 points is out of reach whatever the seeds
    tiny = Comparison("accuracy", 0.0, -0.1, 0.1, 1.0, 0.6, 0.02, 30, (5, 5), True, 0, equivalence_floor=0.3)
    d = decide([(cell, tiny), (cell, small)])[0]
    assert d.verdict == "inconclusive" and d.undecidable and "cannot be shown with this test set" in verdict(d, "full")


def test_a_cluster_column_reaches_the_predictions_and_the_comparison(tmp_path):
    """data.cluster names which test rows belong together: each prediction row carries its cluster, and the
    paired comparison resamples the clusters (a missing column is one line before any model loads)."""
    import random

    from peftbench.report.aggregate import build_cells
    from peftbench.report.compare import compare
    from peftbench.run.folder import RunFolder

    rng = random.Random(1)
    path = tmp_path / "aligned.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(120):  # 40 "sentences", each in three "languages"
            lab = rng.choice(["pos", "neg"])
            word = rng.choice(["good", "great"] if lab == "pos" else ["bad", "poor"])
            for lang in ("a", "b", "c"):
                f.write(json.dumps({"text": f"{lang} {word} {i}", "label": lab, "sent": f"s{i}"}) + "\n")
    out = tmp_path / "out"
    data = toy_grid(path, out, models=["tiny:bert"], methods=["full", "lora"], epochs=1, threads=1)
    data["tasks"][0]["data"]["cluster"] = "sent"
    data["seeds"] = [1, 2, 3]
    assert run_grid(load_grid(data=data), in_process=True, show_progress=False).failed == []
    s = Store(out)
    try:
        results = s.results(with_config=True)
    finally:
        s.close()
    rows = RunFolder(results[0].folder).read_predictions("test")
    assert all("cluster" in r for r in rows)
    found, _ = compare(build_cells(results)[("bert", "toy")], "full", 1000, 0.02)
    (_, r), = found
    assert r.n_clusters == len({x["cluster"] for x in rows}) < r.n_examples
    bad = json.loads(json.dumps(data))
    bad["tasks"][0]["data"]["cluster"] = "nope"
    bad["output_dir"] = str(tmp_path / "bad")
    from peftbench.preflight import check

    problems = check(load_grid(data=bad))
    assert any("data.cluster: column 'nope' not in the train data" in p for p in problems), problems
