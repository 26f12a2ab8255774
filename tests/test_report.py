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

    # any chosen baseline; resamples raised so that 2 / (B + 1) is a tenth of Holm's smallest threshold
    assert "full vs lora: " in md.read_text() and f"{resamples_for(50, 1, 0.05)} resamples" in md.read_text()
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
