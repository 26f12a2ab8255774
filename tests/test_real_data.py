"""The task loaders on the real corpora of ../shared/datasets (skipped, with the reason, where absent):
every layout the studies use is read without loss, and prepared with a tokenizer."""

import pytest

from conftest import SHARED
from peftbench.config import ModelSpec, TaskSpec
from peftbench.models import inspect_model
from peftbench.registry import get
from peftbench.tasks.base import Raw

pytestmark = pytest.mark.integration
DATA = SHARED / "datasets"


def _task(kind, name, data):
    return get("task", kind)(TaskSpec(name=name, type=kind, data=data))


def need(*parts):
    path = DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not found (../shared/datasets absent)")


@need("overfit_ner", "ner_data", "peyma")
def test_peyma_ner_reads_every_sentence_and_tag():
    task = _task("token_classification", "peyma", {"source": str(DATA / "overfit_ner/ner_data/peyma")})
    raw = task.load()
    dd, report = raw.splits, raw.report
    assert report["rows"] == {"train": 8028, "validation": 925, "test": 1026}
    assert {"B-PER", "I-PER", "B-LOC", "B-ORG", "B-DAT", "B-TIM", "B-MON", "B-PCT"} <= set(raw.labels)
    assert report["scheme"] == "IOB2"
    _, tok, arch, _ = inspect_model(ModelSpec(source="tiny:bert"))
    prep = task.prepare(Raw({"test": dd["test"]}, raw.labels, report), tok, arch, 512)
    assert len(prep.features["test"]) == 1026


@need("overfit_ner", "twitter_data", "persian-ner-twitter-data")
def test_parstwiner_tab_separated():
    task = _task("token_classification", "tw", {"source": str(DATA / "overfit_ner/twitter_data/persian-ner-twitter-data")})
    raw = task.load()
    report = raw.report
    assert report["rows"]["train"] > 6000 and "B-EVE" in raw.labels


@need("parsinlu", "data", "reading_comprehension")
def test_parsinlu_reading_comprehension_offsets_all_located():
    task = _task("question_answering", "rc", {"source": str(DATA / "parsinlu/data/reading_comprehension"),
                                              "splits": {"train": "train.jsonl", "validation": "dev.jsonl",
                                                         "test": "eval.jsonl"}})
    raw = task.load()
    dd, report = raw.splits, raw.report
    assert report["rows"] == {"train": 600, "validation": 125, "test": 570}
    assert "answers_not_located" not in report  # all offsets verified
    row = dd["train"][0]
    assert all(row["_context"][s:s + len(t)] == t for s, t in zip(row["_starts"], row["_answers"]))


@need("parsinlu", "data", "multiple-choice")
def test_parsinlu_multiple_choice_with_a_persian_digit_answer():
    task = _task("multiple_choice", "mc", {
        "source": str(DATA / "parsinlu/data/multiple-choice"), "text": "question", "label": "answer",
        "splits": {"train": "train.jsonl", "validation": "valid.jsonl", "test": "test.jsonl"},
        "options": {"choices": "candidates", "label_base": 1}})
    raw = task.load()
    report = raw.report
    assert report["rows"] == {"train": 1271, "validation": 139, "test": 1050} and report["choices_per_example"] == [4]


@need("hulu", "HuCoPA")
def test_hucopa_connectives_and_one_based_labels():
    task = _task("multiple_choice", "hucopa", {
        "source": str(DATA / "hulu/HuCoPA"), "text": "premise",
        "splits": {"train": "train.json", "validation": "val.json", "test": "val.json"},
        "options": {"label_base": 1, "language": "hu"}})
    raw = task.load()
    dd, report = raw.splits, raw.report
    assert report["connectives"] == {"cause": "mert", "effect": "ezért"} and len(dd["train"]) == 400


@need("farstail")
def test_farstail_tab_separated_csv():
    task = _task("classification", "farstail", {
        "source": str(DATA / "farstail"), "delimiter": "\t", "text": "premise", "text_pair": "hypothesis",
        "splits": {"train": "Train-word.csv", "validation": "Val-word.csv", "test": "Test-word.csv"}})
    raw = task.load()
    report = raw.report
    assert list(raw.labels) == ["c", "e", "n"]
    assert report["rows"] == {"train": 7266, "validation": 1537, "test": 1564}


@need("parsinlu", "data", "translation", "quran")
def test_quran_line_aligned_files():
    task = _task("seq2seq", "quran", {
        "source": str(DATA / "parsinlu/data/translation/quran"), "text": "en", "label": "fa",
        "options": {"source_file": "en.ahmedali.txt", "target_file": "fa.makarem.norm.txt"}})
    raw = task.load()
    report = raw.report
    lines = (DATA / "parsinlu/data/translation/quran/en.ahmedali.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6236  # verses (the last line has no newline)
    assert sum(report["rows"].values()) + sum((report.get("dropped_empty_pairs") or {}).values()) == len(lines)


@need("nusax", "datasets", "sentiment")
def test_nusax_recipe_groups_by_language():
    task = _task("classification", "nusax", {"source": "recipe:nusax_sentiment", "group": "language",
                                              "train_groups": ["english"],
                                              "path": str(DATA / "nusax")})
    raw = task.load()
    dd, report = raw.splits, raw.report
    assert set(report["groups"]["test"]) >= {"english", "indonesian", "javanese"}
    assert set(dd["train"]["_group"]) == {"english"} and len(dd["train"]) == 500
    assert "indonesian" in report["zero_shot_groups"]
