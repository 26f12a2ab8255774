import json
import math

import numpy as np

import pytest

from peftbench.config import DataSpec, TaskSpec
from peftbench.data.loading import DataError, load_raw
from peftbench.report import pes
from peftbench.tasks.classification import Classification, classification_metrics


def test_classification_metrics_against_hand_computed_values():
    refs = [0, 0, 0, 1, 1, 1, 2, 2]
    preds = [0, 0, 1, 1, 1, 2, 2, 0]
    m = classification_metrics(preds, refs)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # per class precision: c0 2/3, c1 2/3, c2 1/2; recall: c0 2/3, c1 2/3, c2 1/2
    assert m["macro_precision"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    # binary MCC by its formula
    refs, preds = [1, 1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1, 0]
    tp, tn, fp, fn = 3, 3, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert classification_metrics(preds, refs)["mcc"] == pytest.approx(mcc)


def test_macro_metrics_equal_scikit_learn_with_absent_classes():
    """Regression: a class absent from gold and predictions no longer scores 0 (gold [4], pred [4] with 6 labels
    gave macro F1 0.167); randomised label sets, absent classes and single-class inputs against sklearn."""
    import random

    from sklearn.metrics import f1_score, precision_score, recall_score

    m = classification_metrics([4], [4])
    assert (m["macro_f1"], m["macro_precision"], m["macro_recall"]) == (1.0, 1.0, 1.0)
    rng = random.Random(0)
    for _ in range(200):
        n, present = rng.randint(1, 30), rng.sample(range(6), rng.randint(1, 6))
        refs = [rng.choice(present) for _ in range(n)]
        preds = [rng.choice(present) if rng.random() < 0.8 else rng.randrange(6) for _ in range(n)]
        m = classification_metrics(preds, refs)
        assert m["macro_f1"] == pytest.approx(f1_score(refs, preds, average="macro", zero_division=0))
        assert m["macro_precision"] == pytest.approx(precision_score(refs, preds, average="macro", zero_division=0))
        assert m["macro_recall"] == pytest.approx(recall_score(refs, preds, average="macro", zero_division=0))


def test_pes_reproduces_the_published_check_value():
    """The Persian study's BERT + LoRA sentiment row: P = 177M, V = 3.50 GB, accuracy 0.8485, F1 0.8407, precision
    0.8865, recall 0.7994, weights 2.5 each -> PES 0.1301 (eq. 1). The old log(1+x) formula gave 0.1083."""
    from peftbench.tasks.question_answering import QuestionAnswering
    from peftbench.tasks.token_classification import TokenClassification

    metrics = {"accuracy": 0.8485, "macro_f1": 0.8407, "macro_precision": 0.8865, "macro_recall": 0.7994}
    score = pes(metrics, Classification.pes_weights, 177, 3.50)  # the task type's default weights are the study's
    assert round(score.value, 4) == 0.1301 and score.reason is None
    assert score.variant == pytest.approx(0.843775 / (math.log(math.e + 177) * math.log(math.e + 3.5)))
    assert TokenClassification.pes_weights == {"token_accuracy": 1, "macro_f1": 3, "macro_precision": 2, "macro_recall": 4}
    assert QuestionAnswering.pes_weights == {"f1": 3, "rougeL": 2, "exact_match": 5}


def test_pes_is_undefined_where_the_published_formula_breaks_and_reads_percent_metrics():
    metrics = {"accuracy": 0.9, "macro_f1": 0.8}
    weights = {"accuracy": 1.0, "macro_f1": 3.0}
    small = pes(metrics, weights, 0.5, 2.0)  # below 1M parameters: ln P < 0
    assert small.value is None and "P ≤ 1M" in small.reason and small.variant > 0
    cpu = pes(metrics, weights, 100, 0.3)  # below 1 GB
    assert cpu.value is None and "V ≤ 1 GB" in cpu.reason and pes(metrics, weights, 100, 0).variant > 0
    # the variant is monotone: more parameters or memory, lower score
    assert pes(metrics, weights, 10, 2).variant > pes(metrics, weights, 100, 2).variant > pes(metrics, weights, 100, 8).variant
    from peftbench.tasks.base import percent_metrics

    qa = pes({"f1": 80.0, "exact_match": 70.0, "rougeL": 75.0}, {"f1": 3, "exact_match": 5, "rougeL": 2}, 177, 3.5,
             percent_metrics("question_answering"))  # the metrics QA declares in percent
    assert qa.weighted_metric == pytest.approx((3 * 0.80 + 5 * 0.70 + 2 * 0.75) / 10)  # 0-100 metrics / 100
    missing = pes({"accuracy": 0.9}, weights, 177, 3.5)
    assert missing.value is None and "macro_f1" in missing.reason


def test_confidence_intervals_clipped_to_the_range_and_the_examples_only_comparison():
    from scipy import stats

    from peftbench.report.statistics import seed_aware_test, summarise

    s = summarise([0.80, 0.82, 0.84])
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)
    assert s.mean == pytest.approx(0.82) and s.std == pytest.approx(0.02)
    assert (s.low, s.high) == (pytest.approx(0.82 - half), pytest.approx(0.82 + half)) and not s.clipped
    top = summarise([0.99, 1.0, 0.97], bounds=(0.0, 1.0))  # the t-interval reaches past 1: clipped, and said so
    assert top.high == 1.0 and top.clipped and top.low == pytest.approx(0.9867 - stats.t.ppf(0.975, 2)
                                                                         * np.std([0.99, 1.0, 0.97], ddof=1) / math.sqrt(3), abs=1e-3)
    assert summarise([0.7]).single and summarise([0.7]).low is None and summarise([None]).mean is None
    acc = lambda p, r: sum(a == b for a, b in zip(p, r)) / len(r)  # noqa: E731
    refs = [i % 2 for i in range(200)]
    better = [(refs, refs)]  # always right
    worse = [([1 - x if i % 4 == 0 else x for i, x in enumerate(refs)], refs)]  # 75% right
    res = seed_aware_test(acc, better, worse, "accuracy", resamples=500)
    assert res.difference == pytest.approx(0.25) and res.low > 0.15 and res.high < 0.35 and res.p < 0.001
    assert not res.seed_aware  # one seed: about these two trained models
    same = seed_aware_test(acc, worse, worse, "accuracy", resamples=200)
    assert same.difference == 0 and same.p == 1.0
    with pytest.raises(ValueError, match="same test examples"):
        seed_aware_test(acc, better, [(refs[:10], refs[:10])], "accuracy")


def _task(tmp_path, rows, suffix=".jsonl", **data):
    path = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(sep.join(rows[0]) + "\n" + "".join(sep.join(str(r[k]) for k in rows[0]) + "\n" for r in rows))
    return Classification(TaskSpec(name="t", data=DataSpec(source=str(path), **data)))


ROWS = [{"review": f"text {i}", "score": s} for i, s in enumerate([-2, -1, 0, 1, 2, 3] * 10)]


def test_label_map_drops_rows_and_reports_them(tmp_path):
    task = _task(tmp_path, ROWS, text="review", label="score",
                 label_map={"-2": "neg", "-1": "neg", "1": "pos", "2": "pos", "0": None, "3": None})
    raw = task.load()
    dd, report = raw.splits, raw.report
    assert raw.labels == ("neg", "pos")
    assert sum(report["dropped_by_label_map"].values()) == 20  # every 0 and 3, nothing silent
    assert sum(len(v) for v in dd.values()) == 40
    assert report["carved"] == {"test": 0.1, "validation": 0.1}


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_csv_and_tsv(tmp_path, suffix):
    task = _task(tmp_path, ROWS, suffix=suffix, text="review", label="score")
    raw = task.load()
    dd = raw.splits
    assert raw.labels == ("-2", "-1", "0", "1", "2", "3")  # numeric order
    assert sum(len(v) for v in dd.values()) == 60


def test_bad_data_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="column 'text' not in the data"):
        _task(tmp_path, ROWS).load()
    with pytest.raises(DataError, match=r"label value\(s\) \['3'\] not in data.label_map"):
        _task(tmp_path, ROWS, text="review", label="score",
              label_map={"-2": "n", "-1": "n", "0": None, "1": "p", "2": "p"}).load()
    with pytest.raises(DataError, match="unsupported extension '.xml'"):
        (tmp_path / "x.xml").write_text("<a/>")
        load_raw(DataSpec(source=str(tmp_path / "x.xml")))
    with pytest.raises(DataError, match="is not a known recipe"):
        load_raw(DataSpec(source="recipe:nope"))
    with pytest.raises(DataError, match="cannot load dataset 'nobody/nothing' from the Hugging Face hub"):
        load_raw(DataSpec(source="nobody/nothing"))


def test_local_folder_with_split_files(tmp_path):
    for split, n in (("train", 12), ("dev", 4), ("test", 5)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"text": f"x{i}", "label": i % 2}) + "\n" for i in range(n)))
    dd, report = load_raw(DataSpec(source=str(tmp_path)))
    assert report["rows"] == {"train": 12, "validation": 4, "test": 5}


def test_test_split_has_its_own_cap_and_falls_back_to_the_eval_cap(tmp_path):
    for split, n in (("train", 30), ("dev", 20), ("test", 20)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"text": f"x{i}", "label": i % 2}) + "\n" for i in range(n)))
    _, report = load_raw(DataSpec(source=str(tmp_path), max_eval_samples=5, max_test_samples=12))
    assert report["rows"] == {"train": 30, "validation": 5, "test": 12}
    assert report["capped"] == {"validation": [20, 5], "test": [20, 12]}
    dd, report = load_raw(DataSpec(source=str(tmp_path), max_eval_samples=5))
    assert report["rows"] == {"train": 30, "validation": 5, "test": 5}


def test_demo_recipe_is_balanced_and_split():
    task = Classification(TaskSpec(name="demo", data=DataSpec(source="recipe:demo_sentiment")))
    raw = task.load()
    dd, report = raw.splits, raw.report
    assert report["rows"] == {"train": 150, "validation": 44, "test": 44}
    for split in dd.values():
        labels = split["_label_name"]
        assert labels.count("positive") == labels.count("negative")
    texts = [t for s in dd.values() for t in s["text"]]
    assert len(set(texts)) == len(texts)


def test_raw_errors_became_one_line_errors_with_the_file_and_line(tmp_path):
    """A ragged CSV and a CoNLL line without a separator name the file and line (they were a generic 'error
    occurred while generating the dataset'); a numeric text column and a single class are named (they were an
    AttributeError and accuracy 1.0); a 0-byte safetensors file is named (a bare SafetensorError)."""
    from peftbench.config import ModelSpec
    from peftbench.families import Head, HeadKind
    from peftbench.models import ModelLoadError, load_model
    from peftbench.tasks.token_classification import TokenClassification

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,label\na,b\nc\nd,e,f\n")
    with pytest.raises(DataError, match=r"ragged.csv' could not be parsed as csv: .*Expected 2 fields in line 4, saw 3"):
        load_raw(DataSpec(source=str(ragged)))
    (tmp_path / "ner").mkdir()
    (tmp_path / "ner" / "train.txt").write_text("Ali B-PER\nRezaei\n\n")
    with pytest.raises(DataError, match=r"train.txt:2: no separator"):
        TokenClassification(TaskSpec(name="n", type="token_classification", data={"source": str(tmp_path / "ner")})).load()
    numeric = [{"text": i, "label": "ab"[i % 2]} for i in range(30)]
    with pytest.raises(DataError, match=r"column 'text' \(train\) holds int values \(e.g. '\d+'\), not text"):
        _task(tmp_path, numeric).load()
    single = [{"text": f"t{i}", "label": "only"} for i in range(30)]
    with pytest.raises(DataError, match=r"only one class \(only\) in the data after the label map"):
        _task(tmp_path, single).load()
    from transformers import BertForSequenceClassification

    from peftbench.tiny import bert

    config, tok = bert()
    BertForSequenceClassification(config).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"\(model.safetensors: .*\): the file is empty or truncated"):
        load_model(ModelSpec(source=str(tmp_path / "ckpt")), Head(HeadKind.SEQUENCE, labels=("a", "b")))
