"""The four studies as presets: each validates and expands to the study's grid (run counts and the protocol's
key hyper-parameters); the offline twins validate here and name only offline models and ../shared data."""
from collections import Counter

import pytest

from peftbench import presets
from peftbench.cli import main
from peftbench.config import expand, load_grid

STUDIES = ["hulu-puli", "multilingual-news", "persian-2025", "slovene-peft"]


def grid(name):
    return load_grid(f"presets/{name}.yaml")


def test_presets_are_listed_and_validate(capsys):
    assert set(STUDIES) <= set(presets.names())
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    assert all(f"presets/{n}.yaml" in out for n in STUDIES)
    assert main(["validate", "--schema", "--brief", *[str(presets.folder() / f"{n}.yaml") for n in STUDIES]]) == 0
    out = capsys.readouterr().out
    assert out.count("valid (schema and options") == 4


def test_persian_study_grid():
    g = grid("persian-2025")
    runs = expand(g)
    assert len(runs) == 3 * 4 * 3
    assert {m.source for m in g.models} == {"bert-base-multilingual-cased", "google/mt5-small", "ai-forever/mGPT"}
    assert [m.name for m in g.methods] == ["full", "lora", "dora", "adalora"]
    assert g.train.batch_size == 32 and g.seeds == [42] and g.train.epoch_fraction == 0.5
    protocol = {r.task.name: (r.max_length(), r.lr(), r.epochs(), r.patience()) for r in runs}
    assert protocol == {"sentiment": (150, 2e-5, 5, 1), "ner": (125, 2e-5, 6, 2), "span-qa": (100, 1e-5, 10, 5)}
    ner = next(t for t in g.tasks if t.name == "ner").data
    assert (ner.max_train_samples, ner.max_eval_samples) == (100_000, 10_000)
    qa = next(t for t in g.tasks if t.name == "span-qa").data
    assert qa.options["context"] == "fluent_answer" and qa.options["answers"] == "short_answer"
    assert all(r.task.pes_weights is None for r in runs)  # the study's weights: the task types' defaults


def test_slovene_study_grid():
    g = grid("slovene-peft")
    runs = expand(g)
    assert len(runs) == 3 * 4 * 4 + 1 * 4  # the encoders on SuperGLUE, OPUS-MT on translation
    pairs = Counter((r.model.name, r.task.name) for r in runs)
    assert all(n == 4 for n in pairs.values())
    assert {t for m, t in pairs if m == "opus-mt-sla-en"} == {"translation-sl-en"}
    assert {m.name for m in g.methods} == {"full", "prompt_tuning", "lora", "loha"}
    assert {t.name: t.type for t in g.tasks}["copa"] == "multiple_choice"


def test_news_study_grid():
    g = grid("multilingual-news")
    runs = expand(g)
    assert len(runs) == 1 * 3 * 9
    assert {m.name for m in g.methods} == {"full", "pfeiffer", "lora"}
    scenarios = {t.name: t.data.train_groups for t in g.tasks}
    assert scenarios["genre-en"] == ["en"] and scenarios["framing-en-mt"] == ["en", "en-mt"]
    assert len(scenarios["persuasion-joint"]) == 6
    assert Counter(t.type for t in g.tasks) == {"classification": 3, "multi_label": 6}


def test_hungarian_study_grid():
    g = grid("hulu-puli")
    runs = expand(g)
    assert len(runs) == 3 * (3 + 3) * 5 + 3 * 5  # three learning rates per method: the best is reported; + QLoRA
    qlora = [r for r in runs if r.model.quantization]
    assert len(qlora) == 15 and {r.method.name for r in qlora} == {"lora"}
    assert qlora[0].model.quantization.describe() == "4-bit nf4" and qlora[0].model.source.endswith("Llama-3.1")
    metrics = {t.name: t.metric for t in g.tasks}
    assert metrics == {"hucola": "mcc", "hucopa": "mcc", "hurte": "mcc", "husst": "accuracy", "huwnli": "accuracy"}
    lora = next(m for m in g.methods if m.name == "lora")
    assert (lora.options["r"], lora.options["lora_alpha"], lora.options["lora_dropout"]) == (8, 32, 0.1)
    assert g.train.class_weights == "balanced" and g.train.precision == "bf16"


@pytest.mark.parametrize("name", [n for n in presets.names() if n.endswith("-offline")])
def test_offline_twins_use_offline_sources(name):
    g = grid(name)
    assert all("peftbench-models" in m.source or m.source.startswith("tiny:") for m in g.models)
    assert all(t.data.source.startswith(("recipe:", "../shared", "${")) or "shared/datasets" in t.data.source
               for t in g.tasks), [t.data.source for t in g.tasks]
    assert len(g.seeds) >= 3 and expand(g)  # enough seeds for the seed-aware comparison to resample


def test_cli_output_into_a_closed_pipe_stops_quietly():
    """`peftbench validate grid.yaml | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "peftbench.cli", "validate", "--schema",
                             str(presets.folder() / "persian-2025.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before it writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err
