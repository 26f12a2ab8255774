"""Property-based fuzzing (hypothesis): whatever a user writes into a grid, an override or a data file, the config
loader and the data readers answer with the tool's own one-line errors (ConfigError, DataError) or a result,
never a traceback from inside a library."""
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftbench import registry
from peftbench.config import ConfigError, expand, load_grid
from peftbench.data.loading import DataError

FUZZ = settings(max_examples=int(os.environ.get("PEFTBENCH_FUZZ_EXAMPLES", 60)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

BASE = {"name": "g", "output_dir": "out", "models": ["tiny:bert"], "methods": ["lora", {"name": "houlsby"}],
        "tasks": [{"name": "t", "type": "classification", "data": {"source": "toy.jsonl"}, "lr": 1e-3,
                   "pes_weights": {"accuracy": 1}}],
        "seeds": [1], "train": {"batch_size": 4, "epochs": 1}}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 12, 10 ** 12), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["lora", "tiny:bert", "classification", "accuracy", "1e-3",
                                                           "-1", "nan", "inf", "auto", "fp16", "", "*"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)


def paths(node, prefix=()):
    """Every (path, value) in a nested grid, lists and mappings alike."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


def mutate(data, path, how, value, key):
    data = json.loads(json.dumps(data))
    if not path:
        return value
    *head, last = path
    node = data
    for p in head:
        node = node[p]
    if how == "replace":
        node[last] = value
    elif how == "delete":
        del node[last]
    elif isinstance(node[last], dict):  # "add": an unknown (or known) key below
        node[last][key] = value
    elif isinstance(node[last], list):
        node[last].append(value)
    else:
        node[last] = value
    return data


def loads_or_says_why(**kw):
    try:
        grid = load_grid(**kw)
    except ConfigError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)
        return
    assert expand(grid)  # a grid that validates expands into runs


ALL_PATHS = [p for p, _ in paths(BASE) if p]  # the top level itself: the text test


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["replace", "delete", "add"]), values,
                          st.sampled_from(["r", "lr", "lora_alpha", "options", "source", "type", "epochs", "zz",
                                           "metric", "max_length", "threads", "patience", "sweep"])),
                min_size=1, max_size=3))
def test_any_mutation_of_a_grid_validates_or_gets_one_config_error(mutations):
    data = BASE
    for path, how, value, key in mutations:
        try:
            data = mutate(data, path, how, value, key)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the path's parent
            continue
    loads_or_says_why(data=data)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_as_a_grid_file_validates_or_gets_one_config_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "grid.yaml"
        path.write_text(text, encoding="utf-8")
        loads_or_says_why(path=path)


override_keys = st.sampled_from(["methods.0.r", "methods.*.lora_alpha", "methods.9.r", "tasks.0.lr", "train.epochs",
                                 "seeds", "models", "tasks.0.data", "train", "methods.x.r", "", "a..b", "tasks.*.zz",
                                 "methods.1.options.reduction_factor", "train.batch_size.0"])
override_values = st.one_of(st.text(max_size=20), st.sampled_from(["[1,2", "{a: 1}", "null", "-1", "0", "1e-3",
                                                                 "[lora, full]", "'", "nan", "!!python/object:os.system"]))


@FUZZ
@given(st.lists(st.tuples(override_keys, override_values).map(lambda kv: "=".join(kv)) | st.text(max_size=20),
                min_size=1, max_size=3))
def test_any_command_line_override_validates_or_gets_one_config_error(overrides):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "grid.yaml"
        path.write_text(json.dumps(BASE), encoding="utf-8")
        loads_or_says_why(path=path, overrides=overrides)


# --------------------------------------------------------------------------------------------- data readers

def _task(task_type: str, source: Path, **data):
    grid = load_grid(data={**BASE, "tasks": [{"name": "t", "type": task_type, "data": {"source": str(source), **data}}]})
    return registry.get("task", task_type)(expand(grid)[0].task)


def loads_or_data_error(task_type: str, name: str, content: bytes, **data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(content)
        try:
            _task(task_type, path, **data).load()
        except DataError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)


row_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=12),
                       st.lists(st.one_of(st.integers(-3, 30), st.text(max_size=6)), max_size=3),
                       st.dictionaries(st.sampled_from(["text", "answer_start"]), st.lists(st.integers(-2, 9) |
                                                                                          st.text(max_size=5), max_size=2)))
rows = st.lists(st.dictionaries(st.sampled_from(["text", "label", "sentence", "tokens", "tags", "question",
                                                 "context", "answers", "id", "passage"]), row_values, max_size=6),
                min_size=10, max_size=20)  # enough rows to carve validation and test: the tasks see them


def jsonl(rs) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False, allow_nan=not any(
        isinstance(v, float) and not math.isfinite(v) for v in r.values())) if r else "" for r in rs).encode()


def lines(rs) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rs)


@FUZZ
@given(rows, st.sampled_from(["classification", "question_answering", "multi_label"]))
def test_any_jsonl_rows_load_or_get_one_data_error(rs, task_type):
    loads_or_data_error(task_type, "train.jsonl", lines(rs).encode())


mostly_text = st.one_of(st.text(min_size=1, max_size=12), st.text(max_size=12), row_values)
shaped = {
    "classification": st.fixed_dictionaries({"text": mostly_text, "label": st.sampled_from(["a", "b", 1, 2]) | row_values}),
    "multi_label": st.fixed_dictionaries({"text": mostly_text, "labels": st.lists(st.sampled_from(["x", "y"]), max_size=2)
                                          | row_values}),
    "question_answering": st.fixed_dictionaries({"question": mostly_text, "context": mostly_text,
                                                 "answers": row_values}),
}


@FUZZ
@given(st.sampled_from(sorted(shaped)).flatmap(lambda t: st.tuples(st.just(t), st.lists(shaped[t], min_size=10,
                                                                                         max_size=20))))
def test_rows_of_the_right_shape_with_any_values_load_or_get_one_data_error(case):
    task_type, rs = case
    loads_or_data_error(task_type, "train.jsonl", lines(rs).encode())


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode),
       st.sampled_from(["train.csv", "train.tsv", "train.jsonl", "train.json"]),
       st.sampled_from(["classification", "question_answering", "multiple_choice", "seq2seq"]))
def test_any_bytes_as_a_data_file_load_or_get_one_data_error(content, name, task_type):
    loads_or_data_error(task_type, name, content)


conll_lines = st.lists(st.one_of(st.just(""), st.just("-DOCSTART- O"),
                                 st.tuples(st.text(max_size=8), st.sampled_from(["\t", "|", " ", ""]),
                                           st.sampled_from(["O", "B-PER", "I-PER", "B_LOC", "E-ORG", "S-X", "", "ö"]))
                                 .map("".join), st.text(max_size=20)), max_size=40)


@FUZZ
@given(conll_lines, st.sampled_from(["train.conll", "train.txt"]))
def test_any_conll_file_loads_or_gets_one_data_error(ls, name):
    loads_or_data_error("token_classification", name, "\n".join(ls).encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"", b"\n\n\n", "متن,برچسب\nخوب,1\n".encode()])
def test_edge_files_load_or_get_one_data_error(content):
    for name in ("train.csv", "train.jsonl", "train.json"):
        loads_or_data_error("classification", name, content)
