"""The catalogue of bad inputs a user can give peftbench, and the one line each gets.

Used twice: ``tests/test_bad_inputs.py`` checks every case in-process (exit code, one line, the expected words);
``python tests/bad_inputs.py > docs/bad-inputs.md`` runs every case as a user would (a fresh ``peftbench``
process) and writes the table in the docs with the time to the error.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import write_toy  # noqa: E402


@dataclass
class Case:
    what: str  # the bad input, in words
    build: Callable[[Path], dict]  # writes files under the folder; returns changes to the base grid
    expect: str  # words the one line must contain
    command: str = "validate"  # validate | run | report
    overrides: tuple = ()
    exit_code: int = 2


def grid(tmp: Path, **changes) -> dict:
    toy = tmp / "toy.jsonl"
    if not toy.exists():
        write_toy(toy, n=60)
    base = {"name": "bad", "output_dir": str(tmp / "out"), "models": ["tiny:bert"], "methods": ["lora"],
            "tasks": [{"name": "toy", "type": "classification", "data": {"source": str(toy)}}],
            "seeds": [1], "train": {"epochs": 1, "batch_size": 8, "threads": 1}}
    for key, value in changes.items():
        if key == "task":
            base["tasks"][0].update(value)
        elif key == "data":
            base["tasks"][0]["data"].update(value)
        else:
            base[key] = value
    return base


def file(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def weights_only_checkpoint(tmp: Path) -> str:
    """config.json and model.safetensors, as copied by hand, and no tokenizer files."""
    from transformers import BertForSequenceClassification

    from peftbench.tiny import bert

    config, _ = bert()
    BertForSequenceClassification(config).save_pretrained(tmp / "weights-only")
    return str(tmp / "weights-only")


def tiny_checkpoint(tmp: Path, weights: bytes) -> str:
    from transformers import BertForSequenceClassification

    from peftbench.tiny import bert

    config, tok = bert()
    BertForSequenceClassification(config).save_pretrained(tmp / "ckpt")
    tok.save_pretrained(tmp / "ckpt")
    (tmp / "ckpt" / "model.safetensors").write_bytes(weights)
    return str(tmp / "ckpt")


ROWS = "".join(f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(40))
CASES = [
    # ---------------------------------------------------------------- the grid file itself
    Case("grid file that does not exist", lambda t: None, "cannot read the grid file"),
    Case("not YAML (a tab indents a line)", lambda t: "models:\n\t- tiny:bert\n", "not valid YAML at line 2"),
    Case("top level is a list", lambda t: "- tiny:bert\n", "the top level must be a mapping"),
    Case("required field missing (no tasks)", lambda t: {k: v for k, v in grid(t).items() if k != "tasks"},
         "tasks: required field is missing"),
    Case("misspelt field (train.epoch)", lambda t: grid(t, train={"epoch": 3}), "train.epoch"),
    Case("unknown method", lambda t: grid(t, methods=["lorra"]), "'lorra' is not a known method; allowed:"),
    Case("unknown method option", lambda t: grid(t, methods=[{"name": "houlsby", "reduction_factr": 8}]),
         "unknown option of method 'houlsby'; allowed:"),
    Case("negative lora_alpha", lambda t: grid(t, methods=[{"name": "lora", "lora_alpha": -16}]), "lora_alpha"),
    Case("LoRA rank 0", lambda t: grid(t, methods=[{"name": "lora", "r": 0}]), "methods[0].options.r"),
    Case("unknown task type", lambda t: grid(t, task={"type": "clasification"}), "'clasification'"),
    Case("unknown task option", lambda t: grid(t, task={"type": "token_classification", "data": {
        "source": str(t / "toy.jsonl"), "options": {"schme": "IOB2"}}}), "unknown option of task type"),
    Case("task learning rate 0", lambda t: grid(t, task={"lr": 0}), "tasks[0].lr"),
    Case("negative seed", lambda t: grid(t, seeds=[-1]), "seeds[0]"),
    Case("validation metric the task does not have", lambda t: grid(t, task={"metric": "bleu"}), "bleu"),
    Case("PES weight naming a metric the task lacks", lambda t: grid(t, task={"pes_weights": {"rouge_l": 1}}),
         "rouge_l"),
    Case("epoch_fraction above 1", lambda t: grid(t, train={"epoch_fraction": 1.5}), "train.epoch_fraction"),
    Case("unknown precision", lambda t: grid(t, train={"precision": "fp8"}), "train.precision"),
    # ---------------------------------------------------------------- command-line overrides
    Case("override without '='", lambda t: grid(t), "expected key=value", command="run", overrides=("train.lr",)),
    Case("override index out of range", lambda t: grid(t), "is not an index into a list of 1",
         overrides=("methods.3.r=8",)),
    Case("override with a bad value (names the override)", lambda t: grid(t), "override 'tasks.0.lr=0'",
         overrides=("tasks.0.lr=0",)),
    # ---------------------------------------------------------------- files and folders
    Case("data file that does not exist", lambda t: grid(t, data={"source": str(t / "nope.csv")}), "does not exist"),
    Case("split file that does not exist", lambda t: grid(t, data={"source": str(t), "splits": {"train": "toy.jsonl",
                                                                                                  "test": "no.jsonl"}}),
         "tasks[0].data.splits.test: file"),
    Case("model folder that does not exist", lambda t: grid(t, models=[str(t / "no-model")]),
         "models[0].source: model file or folder"),
    Case("output_dir is a file", lambda t: grid(t, output_dir=file(t, "out.txt", "x")), "is a file, not a folder"),
    Case("unknown data recipe", lambda t: grid(t, data={"source": "recipe:parsinlu_fod"}), "is not a known recipe"),
    Case("unknown tiny model family", lambda t: grid(t, models=["tiny:bart"]), "is not a tiny family"),
    Case("hub model not in the cache, offline", lambda t: grid(t, models=["org/not-cached"]),
         "is not in the local cache"),
    Case("hub dataset not in the cache, offline", lambda t: grid(t, data={"source": "org/no-dataset"}),
         "hub dataset 'org/no-dataset' is not in the local cache"),
    Case("0-byte safetensors in a model folder", lambda t: grid(t, models=[tiny_checkpoint(t, b"")]),
         "is empty or truncated (0 bytes)"),
    Case("model folder without tokenizer files (config.json + weights only)",
         lambda t: grid(t, models=[weights_only_checkpoint(t)]), "has no tokenizer files"),
    # ---------------------------------------------------------------- data content
    Case("text column that is not in the data", lambda t: grid(t, data={"text": "review"}),
         "column 'review' not in the data"),
    Case("label value missing from the label map", lambda t: grid(t, data={"label_map": {"pos": "p"}}),
         "label value(s) ['neg'] not in data.label_map"),
    Case("a single class", lambda t: grid(t, data={"source": file(t, "one.jsonl", "".join(
        f'{{"text": "t{i}", "label": "x"}}\n' for i in range(40)))}), "only one class"),
    Case("all-numeric text column", lambda t: grid(t, data={"source": file(t, "num.jsonl", "".join(
        f'{{"text": {i}, "label": "{"ab"[i % 2]}"}}\n' for i in range(40)))}), "holds int values"),
    Case("ragged CSV", lambda t: grid(t, data={"source": file(t, "r.csv", "text,label\n" + "a,b\n" * 20 + "c,d,e\n")}),
         "Expected 2 fields in line 22, saw 3"),
    Case("JSON lines with a broken line", lambda t: grid(t, data={"source": file(t, "b.jsonl", ROWS + '{"text": \n')}),
         "could not be parsed as json"),
    Case("a file that is not UTF-8", lambda t: grid(t, data={"source": file(t, "l1.csv", "text,label\n".encode() +
                                                                          "café,a\n".encode("latin-1") * 20)}),
         "l1.csv"),
    Case("CoNLL line without a separator", lambda t: grid(t, task={"type": "token_classification", "data": {
        "source": file(t, "ner/train.txt", "Ali B-PER\nRezaei\n\n")}}), "train.txt:2: no separator"),
    Case("QA answers in an unknown layout", lambda t: grid(t, task={"type": "question_answering", "data": {
        "source": file(t, "qa.jsonl", "".join(json.dumps({"question": "q", "context": "c", "answers": 3}) + "\n"
                                             for _ in range(20)))}}), "qa.jsonl:1: answers '3'"),
    Case("unsupported data file type", lambda t: grid(t, data={"source": file(t, "d.xlsx", "x")}),
         "unsupported extension '.xlsx'"),
    # ---------------------------------------------------------------- the store
    Case("damaged results store", lambda t: "damaged-store", "is damaged", command="report"),
]


def materialise(case: Case, tmp: Path) -> list[str]:
    """Write the case's files; the argv for peftbench."""
    built = case.build(tmp)
    if built == "damaged-store":
        (tmp / "out").mkdir()
        (tmp / "out" / "peftbench.sqlite").write_bytes(b"not a database" * 50)
        return ["report", str(tmp / "out")]
    path = tmp / "grid.yaml"
    if built is not None:
        path.write_text(built if isinstance(built, str) else yaml.safe_dump(built, allow_unicode=True), encoding="utf-8")
    return [case.command, str(path), *case.overrides]


def main() -> None:  # pragma: no cover - writes the docs table
    import os
    import platform
    import subprocess
    import tempfile
    import time

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            argv = materialise(case, Path(d))
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "peftbench.cli", *argv], capture_output=True, text=True,
                                  env=env, cwd=d)
            seconds = time.perf_counter() - t0
            lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
            line = lines[-1].replace(d, "…") if lines else "(no output)"
            ok = proc.returncode == case.exit_code and len(lines) == 1 and case.expect in lines[-1]
            rows.append(f"| {len(rows) + 1} | {case.what} | `peftbench {argv[0]}` | "
                        f"`{line.replace('|', '¦')}` | {seconds:.1f} s |{'' if ok else ' ✗'}")
    print("| # | Bad input | Command | The one line (stderr; exit code 2) | Time to the error |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{len(rows)} cases; times are wall time of a fresh `peftbench` process (Python start-up and imports "
          f"included) on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU; "
          "`…` stands for the case's temporary folder.")


if __name__ == "__main__":
    main()
