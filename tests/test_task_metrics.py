"""Task metrics against hand-computed values and the reference implementations (seqeval, sacrebleu, the
official SQuAD v1.1 evaluation script's formulas), plus the learning-rate sweep selection."""
import collections
import re
import string

import numpy as np
import pytest

from peftbench.tasks.multi_label import multi_label_metrics
from peftbench.tasks.question_answering import exact_match, normalize_answer, qa_metrics, token_f1
from peftbench.tasks.token_classification import ner_metrics, normalise_tag


# ----------------------------------------------------------------------------- classification

def test_binary_metrics_equal_scikit_learn_on_random_inputs_and_edge_cases():
    """The positive class's P / R / F1 (the Persian study's sentiment scores) beside the macro ones, on random
    predictions, a positive class absent from gold or predictions, and all-one-class predictions."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    from peftbench.tasks.classification import classification_metrics

    rng = np.random.default_rng(4)
    cases = [(rng.integers(0, 2, n).tolist(), rng.integers(0, 2, n).tolist()) for n in rng.integers(1, 60, 300)]
    cases += [([0, 0, 0], [0, 1, 0]), ([0, 1, 0], [0, 0, 0]), ([1, 1, 1], [1, 1, 1]), ([0, 0], [0, 0])]
    for positive in (0, 1):
        for preds, refs in cases:
            m = classification_metrics(preds, refs, positive)
            kw = dict(pos_label=positive, average="binary", zero_division=0)
            assert m["binary_precision"] == pytest.approx(precision_score(refs, preds, **kw), abs=1e-12)
            assert m["binary_recall"] == pytest.approx(recall_score(refs, preds, **kw), abs=1e-12)
            assert m["binary_f1"] == pytest.approx(f1_score(refs, preds, **kw), abs=1e-12)
            p, r = m["binary_precision"], m["binary_recall"]
            assert m["binary_f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)  # the study's F1
    assert "binary_f1" not in classification_metrics([0, 1], [1, 1])


def test_binary_average_names_its_positive_class_and_feeds_pes(tmp_path):
    """A Persian binary task scored on its positive class: the task's PES weights become the study's over
    binary P / R / F1; a positive label that is not a class is one line naming it."""
    import json

    from peftbench.config import TaskSpec
    from peftbench.data.loading import DataError
    from peftbench.tasks.classification import Classification

    rows = [{"text": t, "label": lab} for t, lab in (("غذا عالی بود", "مثبت"), ("بد بود", "منفی"))] * 10
    path = tmp_path / "fa.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    spec = {"name": "fa", "type": "classification", "data": {"source": str(path), "options": {
        "average": "binary", "positive_label": "مثبت"}}}
    task = Classification(TaskSpec.model_validate(spec))
    assert task.pes_weights == {"accuracy": 2.5, "binary_precision": 2.5, "binary_recall": 2.5, "binary_f1": 2.5}
    raw = task.load()

    class Prep:
        labels = raw.labels

    pos = list(raw.labels).index("مثبت")
    m = task.compute_metrics(Prep, [{"pred": pos}, {"pred": pos}, {"pred": 1 - pos}], [pos, 1 - pos, 1 - pos])
    assert (m["binary_precision"], m["binary_recall"]) == (0.5, 1.0) and m["binary_f1"] == pytest.approx(2 / 3)
    assert "مثبت" in task.metric_info(Prep)["binary"]
    spec["data"]["options"]["positive_label"] = "positive"
    with pytest.raises(DataError, match="positive_label 'positive'; the data has"):
        Classification(TaskSpec.model_validate(spec)).load()


# ----------------------------------------------------------------------------- NER

def test_ner_metrics_by_hand():
    refs = [["B-PER", "I-PER", "O", "B-LOC"]]
    preds = [["B-PER", "I-PER", "O", "O"]]
    m = ner_metrics(preds, refs, ["O", "B-PER", "I-PER", "B-LOC"])
    assert m["token_accuracy"] == pytest.approx(3 / 4)
    # per tag: O P=1/2 R=1; B-PER, I-PER perfect; B-LOC never predicted (0)
    assert m["macro_precision"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert m["macro_recall"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert (m["entity_precision"], m["entity_recall"]) == (1.0, 0.5)
    assert m["entity_f1"] == pytest.approx(2 / 3)
    assert m["entity_f1/PER"] == 1.0 and m["entity_f1/LOC"] == 0.0


def test_ner_entity_scores_match_seqeval_strict():
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2, IOBES

    refs = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "B-ORG", "O"]]
    preds = [["I-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "B-ORG", "I-ORG"]]  # an I- start is no entity (strict)
    m = ner_metrics(preds, refs, sorted({t for s in refs + preds for t in s}))
    kw = dict(mode="strict", scheme=IOB2)
    assert m["entity_f1"] == pytest.approx(f1_score(refs, preds, **kw))
    assert m["entity_precision"] == pytest.approx(precision_score(refs, preds, **kw))
    assert m["entity_recall"] == pytest.approx(recall_score(refs, preds, **kw))
    assert m["entity_f1"] < f1_score(refs, preds)  # lenient (conlleval) mode would count the I- start
    refs = [["S-PER", "O", "B-LOC", "E-LOC"]]
    preds = [["S-PER", "O", "B-LOC", "I-LOC"]]
    m = ner_metrics(preds, refs, sorted({t for s in refs + preds for t in s}), scheme="IOBES")
    assert m["entity_f1"] == pytest.approx(f1_score(refs, preds, mode="strict", scheme=IOBES)) == pytest.approx(2 / 3)


def test_tag_prefix_styles():
    assert [normalise_tag(t) for t in ("B_PER", "I_ORG", "O", "B-LOC", "L-DAT", "E_TIM")] == \
        ["B-PER", "I-ORG", "O", "B-LOC", "E-DAT", "E-TIM"]


# ----------------------------------------------------------------------------- seq2seq

def test_seq2seq_metrics_are_sacrebleu_with_signatures():
    import sacrebleu

    from peftbench.config import TaskSpec
    from peftbench.tasks.seq2seq import Seq2Seq

    task = Seq2Seq(TaskSpec(name="t", type="seq2seq", data={"source": "x"}))
    hyps = ["the cat sat on the mat", "a dog barked loudly today", "hello"]
    refs = ["the cat sat on a mat", "the dog barked loudly today", "hello world"]
    m = task.compute_metrics(None, [{"prediction": h} for h in hyps], refs)
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    info = task.metric_info(None)
    assert info["bleu_signature"].startswith("nrefs:1|") and "chrf_signature" in info
    same = task.compute_metrics(None, [{"prediction": r} for r in refs], refs)
    assert same["bleu"] == pytest.approx(100) and same["chrf"] == pytest.approx(100)
    # hand-computed BLEU: 'a b c x' vs 'a b c d', same length (brevity penalty 1); n-gram precisions
    # 3/4, 2/3, 1/2, 0/1 -> sacrebleu's default 'exp' smoothing makes the zero 1 / (2 * 1)
    one = task.compute_metrics(None, [{"prediction": "a b c x"}], ["a b c d"])
    p = [3 / 4, 2 / 3, 1 / 2, 1 / 2]
    assert one["bleu"] == pytest.approx(100 * np.exp(np.mean(np.log(p))), rel=1e-6)


# ----------------------------------------------------------------------------- span QA

def _official_normalize_answer(s):  # the SQuAD v1.1 evaluation script, verbatim
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction, ground_truth):
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _official_em(prediction, ground_truth):
    return _official_normalize_answer(prediction) == _official_normalize_answer(ground_truth)


ENGLISH = [("The Eiffel Tower", "Eiffel tower"), ("in 1889, Paris", "1889"), ("Denver Broncos", "the Broncos"),
           ("an apple", "apple pie"), ("Saint-Denis!", "Saint Denis"), ("nothing", "everything else"),
           ("a b c d", "a b d")]


def test_qa_matches_the_official_squad_formula_on_english():
    for pred, gold in ENGLISH:
        assert exact_match(pred, gold) == float(_official_em(pred, gold)), (pred, gold)
        assert token_f1(pred, gold) == pytest.approx(_official_f1(pred, gold)), (pred, gold)
    preds = [p for p, _ in ENGLISH]
    golds = [[g, "other answer"] for _, g in ENGLISH]  # max over gold answers
    m = qa_metrics(preds, golds)
    em = 100 * np.mean([max(_official_em(p, g) for g in gs) for p, gs in zip(preds, golds)])
    f1 = 100 * np.mean([max(_official_f1(p, g) for g in gs) for p, gs in zip(preds, golds)])
    assert m["exact_match"] == pytest.approx(em) and m["f1"] == pytest.approx(f1)


def test_persian_normalisation():
    assert normalize_answer("كتاب علي") == normalize_answer("کتاب علی")  # Arabic kaf / yeh
    assert normalize_answer("می‌شود") == "می شود"  # ZWNJ
    assert normalize_answer("کِتابْ") == "کتاب"  # diacritics
    assert normalize_answer("سال ۱۳۹۹") == normalize_answer("سال ١٣٩٩") == "سال 1399"  # Persian / Arabic digits
    assert normalize_answer("«تهران»،") == "تهران"  # Persian punctuation
    assert normalize_answer("تهـــران") == "تهران"  # tatweel
    assert exact_match("كتاب", "کتاب") == 1.0
    assert token_f1("شهر تهران", "تهران") == pytest.approx(2 / 3)


def test_combining_marks_of_other_scripts_are_kept():
    """Regression: stripping every Unicode Mn made different Hindi / Thai / Bengali words equal."""
    assert exact_match("किताब", "कताब") == 0.0  # Devanagari vowel sign i
    assert exact_match("कि", "क") == 0.0 and exact_match("क्ष", "कष") == 0.0  # virama
    assert exact_match("กิน", "กน") == 0.0  # Thai sara i
    assert exact_match("কি", "ক") == 0.0  # Bengali
    assert normalize_answer("کِتابْ") == "کتاب" and normalize_answer("قُرْآن") == "قرآن"  # Arabic-script marks go


def test_qa_matches_the_official_squad_formula_on_random_non_latin_text():
    """Random Devanagari / Thai / Cyrillic / Latin words with combining marks: our EM / F1 equal the official
    script's (which keeps every mark), where no Arabic-script or Persian-specific character is involved."""
    import random

    rng = random.Random(1)
    alphabets = ["कखगचजटडतदनपबमयरलवसह", "िीुूेैोौ्ं", "กขคงจฉชซดตถทนบปผพฟมยรลวสห", "ิีึืุู่้๊๋",
                 "абвгдежзийклмнопрстуфхцчшщ", "abcdefghij", "\u0301\u0308"]
    def word():
        base = rng.choice([0, 2, 4, 5])
        return "".join(rng.choice(alphabets[base]) + (rng.choice(alphabets[base + 1]) if base < 4 and rng.random() < .5
                       else rng.choice(alphabets[6]) if base == 5 and rng.random() < .3 else "")
                       for _ in range(rng.randint(1, 4)))
    for _ in range(300):
        pred = " ".join(word() for _ in range(rng.randint(0, 4)))
        gold = " ".join(word() for _ in range(rng.randint(1, 4))) if rng.random() < .7 else pred
        assert exact_match(pred, gold) == float(_official_em(pred, gold)), (pred, gold)
        if _official_normalize_answer(pred) and _official_normalize_answer(gold):
            assert token_f1(pred, gold) == pytest.approx(_official_f1(pred, gold)), (pred, gold)


def test_bleu_of_an_empty_corpus_is_a_one_line_error():
    from peftbench.tasks.seq2seq import translation_metrics

    with pytest.raises(ValueError, match="BLEU / chrF of an empty corpus are undefined"):
        translation_metrics([], [])
    assert translation_metrics(["", ""], ["a b", "c"]) == {"bleu": 0.0, "chrf": 0.0, **(
        {"meteor": 0.0} if "meteor" in translation_metrics([""], ["a"]) else {})}


def test_ner_tag_macro_ignores_tags_absent_from_gold_and_predictions():
    refs, preds = [["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]]
    m = ner_metrics(preds, refs, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])  # LOC tags in neither
    assert m["macro_f1"] == 1.0 and m["macro_precision"] == 1.0 and m["macro_recall"] == 1.0


def test_persian_rouge_by_hand():
    # pred: a b c d ; gold: a b d  (Persian words)
    a, b, c, d = "من", "به", "مدرسه", "رفتم"
    m = qa_metrics([f"{a} {b} {c} {d}"], [[f"{a} {b} {d}"]])
    assert m["rouge1"] == pytest.approx(100 * 6 / 7)  # P 3/4, R 3/3
    assert m["rouge2"] == pytest.approx(100 * 0.4)  # bigrams: 1 of 3 predicted, 1 of 2 gold
    assert m["rougeL"] == pytest.approx(100 * 6 / 7)  # LCS 3
    # rouge-score's default tokenizer would drop every Persian token; ours keeps them
    assert qa_metrics(["کتاب"], [["کتاب"]])["rouge1"] == 100.0


def test_unanswerable_scoring():
    m = qa_metrics(["", "x"], [[], []])
    assert m["exact_match"] == 50.0 and m["f1"] == 50.0


# ----------------------------------------------------------------------------- multi-label

def test_multi_label_metrics_by_hand():
    gold = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    pred = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0]])
    m = multi_label_metrics(pred, gold)
    # micro: TP=4, FP=1, FN=1 -> P = R = F1 = 0.8
    assert m["micro_f1"] == pytest.approx(0.8) and m["micro_precision"] == pytest.approx(0.8)
    # per label F1: label0 1.0, label1 1.0, label2 0 (1 FP, 1 FN)
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["subset_accuracy"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- sweeps

def _result(method, lr, seed, val, test):
    return {"model": "m", "task": "t", "method": method, "seed": seed, "sweep": {"lr": [1e-4, 1e-3]},
            "training": {"lr": lr, "best_validation": val, "validation_metric": "accuracy"},
            "test": {"metrics": {"accuracy": test}}}


def test_sweep_keeps_the_learning_rate_best_on_validation():
    from peftbench.report import select_sweeps

    results = [_result("lora", 1e-4, 1, 0.70, 0.99), _result("lora", 1e-4, 2, 0.72, 0.99),
               _result("lora", 1e-3, 1, 0.80, 0.60), _result("lora", 1e-3, 2, 0.78, 0.61),
               {**_result("full", 2e-5, 1, 0.5, 0.5), "sweep": None}]
    kept, rows = select_sweeps(results)
    lora = [r for r in kept if r.method == "lora"]
    assert {r.training.lr for r in lora} == {1e-3}  # best mean validation, even though its test is worse
    assert len(kept) == 3 and [r[-1] for r in rows] == ["", "chosen"]


# ----------------------------------------------------------------------------- metric declarations

def test_every_task_declares_the_metrics_it_computes_and_their_scale():
    """Each task type's ``metrics`` name what it reports (``metric_names`` derives from them), its default
    metric among them; the percent ones are the 0-100 ones, and PES reads them divided by 100."""
    from peftbench import registry
    from peftbench.tasks.base import declared, percent_metrics
    from peftbench.report.pes import weighted_metric
    from peftbench.tasks.question_answering import qa_metrics

    for name in registry.names("task"):
        cls = registry.get("task", name)
        assert cls.metric_names == tuple(m.name for m in cls.metrics) and cls.default_metric in cls.metric_names
    assert percent_metrics("question_answering") == {"exact_match", "f1", "rouge1", "rouge2", "rougeL"}
    assert percent_metrics("seq2seq") == {"bleu", "chrf"} and percent_metrics("classification") == frozenset()
    assert declared("classification", "macro_f1").confusion and not declared("classification", "binary_f1").confusion
    assert declared("question_answering", "f1").per_example and declared("nobody", "x").scale == 1.0
    qa = qa_metrics(["paris", "1990"], [["Paris"], ["in 1991"]])  # 0-100 as computed
    assert qa["exact_match"] == 50.0
    assert weighted_metric(qa, {"exact_match": 1.0}, percent_metrics("question_answering")) == 0.5


def test_a_lower_is_better_metric_is_kept_chosen_and_judged_by_its_direction():
    """A task declaring its metric lower-is-better: the best checkpoint, the sweep's rate and the verdict read
    the declaration (every built-in metric is higher-is-better)."""
    from peftbench import registry
    from peftbench.report.aggregate import Cell
    from peftbench.report.compare import decide
    from peftbench.report.statistics import Comparison
    from peftbench.result import RunResult
    from peftbench.run.recipe import BestKeeper
    from peftbench.sweeps import choose
    from peftbench.tasks.base import Metric, Task

    class Perplexity(Task):
        name = "perplexity_task"
        default_metric = "perplexity"
        metrics = (Metric("perplexity", higher_is_better=False),)

    import torch

    model = torch.nn.Linear(2, 1)
    keeper = BestKeeper(higher_is_better=False)
    assert keeper.offer(1, 9.0, model) and keeper.offer(2, 7.5, model) and not keeper.offer(3, 8.0, model)
    assert not keeper.offer(4, float("nan"), model) and (keeper.epoch, keeper.score) == (2, 7.5)
    registry.register("task", "perplexity_task", Perplexity)
    try:
        run = lambda v: RunResult.load({"seed": 1, "task_type": "perplexity_task",  # noqa: E731
                                        "training": {"validation_metric": "perplexity", "best_validation": v}})
        assert choose({1e-3: [run(12.0)], 1e-2: [run(8.0)]})[0] == 1e-2
        r = Comparison("perplexity", -2.0, -3.0, -1.0, 0.001, None, None, 50, (3, 3), True, 1000,
                       higher_is_better=False)
        cell = Cell("m", "t", "lora", "lora")
        assert decide([(cell, r)])[0].verdict == "better"
        assert decide([(cell, Comparison("accuracy", -2.0, -3.0, -1.0, 0.001, None, None, 50, (3, 3), True,
                                         1000))])[0].verdict == "worse"
    finally:
        registry.unregister("task", "perplexity_task")
