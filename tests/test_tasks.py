"""Every task type trains on tiny encoder, encoder-decoder and decoder models under full and LoRA, with
per-example predictions; task-specific behaviour (groups, windows, thresholds, alignment) is checked."""
import json

import numpy as np
import pytest
import torch

from conftest import (write_toy, write_toy_choice, write_toy_multilabel, write_toy_ner, write_toy_qa,
                      write_toy_translation)
from peftbench.config import expand, load_grid
from peftbench.run.recipe import execute

TASKS = {
    "multiple_choice": (write_toy_choice, "c.jsonl", {"text": "premise", "options": {"label_base": 1}}, "accuracy"),
    "token_classification": (write_toy_ner, "train.txt", {}, "entity_f1"),
    "question_answering": (write_toy_qa, "qa.jsonl", {"options": {"doc_stride": 8}}, "f1"),
    "multi_label": (write_toy_multilabel, "ml.jsonl", {"label": "frames", "options": {"separator": ";"}}, "micro_f1"),
    "seq2seq": (write_toy_translation, "t.jsonl", {"text": "en", "label": "es", "max_eval_samples": 16}, "chrf"),
}


def task_grid(task_type, tmp_path, models, methods, **train):
    writer, fname, data, _ = TASKS[task_type]
    path = writer(tmp_path / fname)
    source = str(tmp_path) if fname == "train.txt" else str(path)
    base = {"lr": 5e-3, "epochs": 3, "batch_size": 16, "patience": None, "max_length": 48}
    base.update(train)
    return {"name": "tasks", "output_dir": str(tmp_path / "out"), "models": models, "methods": methods, "train": base,
            "tasks": [{"name": task_type, "type": task_type, "generation": {"max_new_tokens": 16},
                       "data": {"source": source, **data}}]}


@pytest.mark.parametrize("family", ["tiny:bert", "tiny:t5", "tiny:gpt2"])
@pytest.mark.parametrize("task_type", list(TASKS))
def test_task_trains_on_every_family_full_and_lora(task_type, family, tmp_path):
    if task_type == "seq2seq" and family == "tiny:bert":
        run = expand(load_grid(data=task_grid(task_type, tmp_path, [family], ["lora"])))[0]
        with pytest.raises(ValueError, match="needs an encoder-decoder or decoder model"):
            execute(run, tmp_path / "run", show_progress=False)
        family = "tiny:bert2bert"  # the encoder-decoder built from BERT halves stands in
    runs = expand(load_grid(data=task_grid(task_type, tmp_path, [family], ["full", "lora"])))
    for run in runs:
        result = execute(run, tmp_path / run.slug, show_progress=False)
        losses = [c["train_loss"] for c in result.curves]
        assert losses[-1] < losses[0], (run.method.name, losses)
        metrics = result.test.metrics
        assert TASKS[task_type][3] in metrics and all(v == v for v in metrics.values())
        lines = (tmp_path / run.slug / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == result.test.samples > 0
        assert "reference" in json.loads(lines[0])
        if run.method.name == "lora":
            assert result.parameters.trainable < result.parameters.total / 3


def test_full_fine_tuning_reaches_high_scores_on_the_toy_tasks(tmp_path):
    """Not just 'runs': on the learnable toys a tiny BERT gets the answers right."""
    for task_type, floor in (("multiple_choice", 0.9), ("token_classification", 0.8), ("question_answering", 60.0)):
        run = expand(load_grid(data=task_grid(task_type, tmp_path, ["tiny:bert"], ["full"], epochs=4)))[0]
        result = execute(run, tmp_path / task_type, show_progress=False)
        assert result.test.metrics[TASKS[task_type][3]] >= floor, (task_type, result.test.metrics)


@pytest.mark.parametrize("family", ["tiny:bert", "tiny:gpt2", "tiny:llama"])
def test_prompt_tuning_runs_multiple_choice(family, tmp_path):
    """The Slovene study could not run prompt tuning on COPA; here the pair-scoring head makes it work: the
    virtual tokens (and the one-score head) train, and only they do. (That prompt tuning *learns* is shown on
    seq2seq below, from a pretrained tiny model; random tiny encoders give a prompt little to steer.)"""
    run = expand(load_grid(data=task_grid("multiple_choice", tmp_path, [family], ["prompt_tuning"], lr=3e-2,
                                          epochs=2)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    # 20 virtual tokens x hidden 32, plus the one-score head: Linear(32, 1), with a bias for BERT
    assert result.parameters.trainable == 20 * 32 + 32 + (family == "tiny:bert")
    assert result.method_notes["num_virtual_tokens"] == 20
    assert all(np.isfinite(c["train_loss"]) for c in result.curves)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "weights" / "adapter_model.safetensors"), "pt") as f:
        prompt = f.get_tensor(next(k for k in f.keys() if "prompt_embeddings" in k))
    assert prompt.shape == (20, 32)
    pred = json.loads((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()[0])
    assert len(pred["probs"]) == 2 and abs(sum(pred["probs"]) - 1) < 1e-3


@pytest.mark.parametrize("task_type", ["token_classification", "question_answering"])
@pytest.mark.parametrize("family", ["tiny:bert", "tiny:t5", "tiny:gpt2", "tiny:bert2bert"])
def test_prompt_tuning_on_token_level_tasks(task_type, family, tmp_path):
    """Virtual tokens shift token positions; labels and spans must still line up."""
    run = expand(load_grid(data=task_grid(task_type, tmp_path, [family], ["prompt_tuning"], lr=3e-2, epochs=3)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    losses = [c["train_loss"] for c in result.curves]
    assert losses[-1] < losses[0], losses


def test_multiple_choice_head_equals_the_standard_encoder_head():
    """For encoders the pair-scoring model is BertForMultipleChoice: same pooler, dropout, linear to one score."""
    from transformers import BertForMultipleChoice

    from peftbench.config import ModelSpec, TaskSpec
    from peftbench.families import Head, HeadKind
    from peftbench.methods.adapter import ModelAdapter
    from peftbench.methods.full import FullFineTuning
    from peftbench.models import load_model
    from peftbench.tasks.multiple_choice import ChoiceCollator, MultipleChoice

    task = MultipleChoice(TaskSpec(name="c", type="multiple_choice", data={"source": "x"}))
    model, tok, _ = load_model(ModelSpec(source="tiny:bert"), Head(HeadKind.SEQUENCE, num_outputs=1))
    reference = BertForMultipleChoice(model.config)
    reference.load_state_dict(model.state_dict())
    model.eval(), reference.eval()
    choices = ("a good day", "a bad day", "so so")
    feats = []
    for context in ("it rained", "we sang all night"):
        enc = [tok(context, x) for x in choices]
        feats.append({**{k: [e[k] for e in enc] for k in enc[0]}, "labels": 0})
    batch = ChoiceCollator(tok)(feats)
    with torch.no_grad():
        ours = task.forward(ModelAdapter(model, FullFineTuning()), batch, None)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch]
        ref = reference(**{k: batch[k].view(len(feats), len(choices), -1) for k in keys})
    torch.testing.assert_close(ours.logits, ref.logits)


def test_multiple_choice_connectives_and_label_checks(tmp_path):
    from peftbench.config import TaskSpec
    from peftbench.data.loading import DataError
    from peftbench.tasks.multiple_choice import MultipleChoice

    path = write_toy_choice(tmp_path / "c.jsonl", n=40)
    spec = {"name": "copa", "type": "multiple_choice", "data": {"source": str(path), "text": "premise",
                                                                 "options": {"label_base": 1, "language": "hu"}}}
    raw = MultipleChoice(TaskSpec(**spec)).load()
    row, report = raw.splits["train"][0], raw.report
    assert row["_context"].endswith((" mert", " ezért")) and report["choices_per_example"] == [2]
    spec["data"]["options"] = {"label_base": 0}
    with pytest.raises(DataError, match="out of range for 2 choices"):
        MultipleChoice(TaskSpec(**spec)).load()
    spec["data"]["options"] = {"label_base": 1, "language": "xx"}
    with pytest.raises(DataError, match="no connectives for language 'xx'"):
        MultipleChoice(TaskSpec(**spec)).load()


def test_ner_reads_conll_layouts_and_aligns_subwords(tmp_path):
    from peftbench.config import ModelSpec, TaskSpec
    from peftbench.models import inspect_model
    from peftbench.tasks.token_classification import TokenClassification

    (tmp_path / "tab").mkdir()
    (tmp_path / "tab" / "train.txt").write_text("-DOCSTART- O\n\nAli\tB-PER\nRezaei\tI-PER\nsaw\tO\n\n"
                                                 "Tehran\tS-LOC\n\n" * 6, encoding="utf-8")
    spec = TaskSpec(name="n", type="token_classification", data={"source": str(tmp_path / "tab"),
                                                                 "options": {"label_all_subtokens": True}})
    task = TokenClassification(spec)
    raw = task.load()
    dd, report = raw.splits, raw.report
    assert report["scheme"] == "IOBES" and "B-PER" in raw.labels and "S-LOC" in raw.labels
    assert dd["train"][0]["tokens"] == ["Ali", "Rezaei", "saw"]
    _, tok, arch, _ = inspect_model(ModelSpec(source="tiny:bert"))
    prep = task.prepare(raw, tok, arch, 64)
    assert prep.extra["scheme"] == "IOBES" and prep.labels == raw.labels
    row = prep.features["train"][0]
    index = {t: i for i, t in enumerate(prep.labels)}
    labelled = [lab for lab in row["labels"] if lab != -100]
    # byte-level pieces: "Ali" = 3 pieces -> B-PER then I-PER twice (all sub-tokens), "Rezaei" 6 x I-PER, "saw" 3 x O
    assert labelled == [index["B-PER"]] + [index["I-PER"]] * 8 + [index["O"]] * 3

    pipe = tmp_path / "pipe.txt"
    pipe.write_text("خبرگزاری|B_ORG\nمهر|I_ORG\n،|O\n\n" * 20, encoding="utf-8")
    task = TokenClassification(TaskSpec(name="n", type="token_classification", data={"source": str(pipe)}))
    raw = task.load()
    assert set(raw.labels) == {"O", "B-ORG", "I-ORG"} and raw.report["scheme"] == "IOB2"


def test_cross_lingual_groups_train_on_some_and_score_each(tmp_path):
    """Train on 'en' only, test on 'en' and the zero-shot 'xx': metrics per group and overall."""
    rows = [json.loads(line) for line in write_toy(tmp_path / "a.jsonl", n=300).read_text().splitlines()]
    path = tmp_path / "multi.jsonl"
    with open(path, "w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({**r, "lang": "en" if i % 3 else "xx"}) + "\n")
    data = {"models": ["tiny:bert"], "methods": ["full"], "train": {"lr": 2e-3, "epochs": 2, "patience": None},
            "tasks": [{"name": "xl", "data": {"source": str(path), "group": "lang", "train_groups": ["en"]}}]}
    run = expand(load_grid(data=data))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    assert result.data["zero_shot_groups"] == ["xx"]
    assert result.data["held_out_of_training"]["train"] > 0
    by = result.test.metrics_by_group
    assert set(by) == {"en", "xx"} and by["en"]["samples"] + by["xx"]["samples"] == result.test.samples
    with pytest.raises(Exception, match="train_groups needs data.group"):
        load_grid(data={**data, "tasks": [{"name": "xl", "data": {"source": str(path), "train_groups": ["en"]}}]})


def test_multilabel_thresholds_are_tuned_on_validation(tmp_path):
    run = expand(load_grid(data=task_grid("multi_label", tmp_path, ["tiny:bert"], ["full"], lr=2e-3)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    th = result.calibration["thresholds"]
    assert set(th) == {"economy", "health", "politics"} and all(0 < t < 1 for t in th.values())
    preds = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    labels = sorted(th)
    for p in preds:  # test predictions apply the tuned thresholds
        assert p["pred"] == [j for j, pr in enumerate(p["probs"]) if pr >= th[labels[j]]]


def test_unanswerable_questions_predict_empty(tmp_path):
    path = write_toy_qa(tmp_path / "qa.jsonl", unanswerable=True)
    data = {"models": ["tiny:bert"], "methods": ["full"], "train": {"lr": 5e-3, "epochs": 4, "patience": None,
                                                                    "max_length": 48},
            "tasks": [{"name": "qa2", "type": "question_answering", "data": {"source": str(path)}}]}
    result = execute(expand(load_grid(data=data))[0], tmp_path / "run", show_progress=False)
    assert result.data["unanswerable"] is True and result.data["no_answer_rows"]["test"] > 0
    preds = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    empty = [p for p in preds if p["reference"] == []]
    assert sum(p["prediction"] == "" for p in empty) >= len(empty) // 2  # it learned to abstain


def test_qa_long_contexts_are_windowed_and_rejoined(tmp_path):
    """A context far longer than max_length: several windows per question, one prediction per question."""
    from peftbench.config import ModelSpec, TaskSpec
    from peftbench.models import inspect_model
    from peftbench.tasks.question_answering import QuestionAnswering

    ctx = " ".join(["filler words here"] * 20) + " the key is red ."
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": "what is the key?", "passage": ctx,
                                        "answers": [[ctx.index("red"), "red"]]}) + "\n" for _ in range(20)))
    task = QuestionAnswering(TaskSpec(name="q", type="question_answering",
                                      data={"source": str(path), "options": {"doc_stride": 16}}))
    raw = task.load()
    dd = raw.splits
    _, tok, arch, _ = inspect_model(ModelSpec(source="tiny:bert"))
    feats = task.prepare(raw, tok, arch, 64).features
    n_val = len(dd["validation"])
    assert len(feats["validation"]) > 3 * n_val  # windows
    assert len(feats["train"]) < len(feats["validation"]) / n_val * len(dd["train"])  # train keeps answer windows
    f = feats["train"][0]
    start, end = f["start_positions"], f["end_positions"]
    span = ctx[f["_offsets"][start][0]:f["_offsets"][end][1]]
    assert span == "red"


@pytest.mark.parametrize("family", ["tiny:t5", "tiny:gpt2"])
def test_prompt_tuning_learns_a_seq2seq_task(family, tmp_path):
    """The Slovene study got BLEU 0.004 from prompt tuning on translation. Prompt tuning steers a pretrained
    model, so first 'pretrain' a tiny model (full fine-tuning, exported as a checkpoint) to translate into
    Spanish by default and into French after 'fr: '; then prompt-tune it, without any prefix, to French:
    the virtual tokens must learn what 'fr: ' does, and the validation loss falls far below its start."""
    import random

    rng = random.Random(0)
    es = {"cat": "gato", "dog": "perro", "red": "rojo", "sun": "sol"}
    fr = {"cat": "chat", "dog": "chien", "red": "rouge", "sun": "soleil"}
    with open(tmp_path / "mix.jsonl", "w") as mix, open(tmp_path / "fr.jsonl", "w") as target:
        for i in range(600):
            words = [rng.choice(list(es)) for _ in range(rng.randint(1, 2))]
            prefix, lex = rng.choice([("es: ", es), ("fr: ", fr), ("", es)])
            mix.write(json.dumps({"src": prefix + " ".join(words), "tgt": " ".join(lex[w] for w in words)}) + "\n")
            if i < 300:
                target.write(json.dumps({"src": " ".join(words), "tgt": " ".join(fr[w] for w in words)}) + "\n")

    def grid(source, method, data, **train):
        return {"models": [source], "methods": [method], "train": {"batch_size": 16, "patience": None, **train},
                "tasks": [{"name": "t", "type": "seq2seq", "generation": {"max_new_tokens": 12},
                           "data": {"source": str(data), "text": "src", "label": "tgt", "max_eval_samples": 20}}]}

    pre = execute(expand(load_grid(data=grid(family, "full", tmp_path / "mix.jsonl", lr=5e-3, epochs=10,
                                             export_merged=True)))[0], tmp_path / "pre", show_progress=False)
    assert pre.merge_check["max_abs_logit_diff"] == 0.0  # full fine-tuning exports the model itself
    run = expand(load_grid(data=grid(str(tmp_path / "pre" / "merged"), "prompt_tuning", tmp_path / "fr.jsonl",
                                     lr=0.1, epochs=3, eval_before_training=True)))[0]
    result = execute(run, tmp_path / "pt", show_progress=False)
    val = [c["val_loss"] for c in result.curves]
    assert result.curves[0]["epoch"] == 0 and result.training.epochs_run == 3
    assert val[-1] < 0.6 * val[0], val
    # only the virtual tokens train (peft sizes the table for encoder and decoder on encoder-decoders)
    assert result.parameters.trainable == 20 * 32 * (2 if family == "tiny:t5" else 1)


def test_every_task_type_in_one_grid_and_one_report(tmp_path):
    """One grid with all task types (each run in the grid runner), one store, one report with a section per
    task and the per-type / per-group breakdown."""
    from peftbench.report import render
    from peftbench.runner import run_grid
    from peftbench.store import Store

    tasks = []
    for task_type in TASKS:
        (tmp_path / task_type).mkdir()
        tasks.append(task_grid(task_type, tmp_path / task_type, ["tiny:gpt2"], ["lora"])["tasks"][0])
    grid = load_grid(data={"name": "all-tasks", "output_dir": str(tmp_path / "out"), "models": ["tiny:gpt2"],
                           "methods": ["lora"], "tasks": tasks,
                           "train": {"lr": 5e-3, "epochs": 1, "batch_size": 16, "max_length": 48}})
    summary = run_grid(grid, in_process=True, show_progress=False)
    assert summary.failed == [] and len(summary.finished) == len(TASKS)
    store = Store(tmp_path / "out")
    try:
        assert {r.task_type for r in store.results()} == set(TASKS)
    finally:
        store.close()
    md, _ = render(tmp_path / "out", echo=lambda *a: None)
    text = md.read_text()
    for task_type in TASKS:
        assert f"## gpt2 · {task_type}" in text
    assert "entity_f1" in text and "chrf" in text and "Breakdown" in text
