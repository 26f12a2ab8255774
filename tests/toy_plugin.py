"""A toy task type and a toy method defined outside the project: registered in-process by
tests/test_extension.py and declared as entry points of a plugin package by tests/test_plugins.py."""
from peftbench.data.loading import load_raw
from peftbench.families import Head, HeadKind
from peftbench.methods.base import Method, freeze_all_but, in_head, lrs
from peftbench.options import Options
from peftbench.tasks.base import (MetaCollator, Prepared, Raw, Task, cross_entropy, label_index, map_splits,
                                  require_columns, softmax_list)


class KeywordOptions(Options):
    keyword: str = "good"


class KeywordTask(Task):
    """Does the text contain the keyword? (labels from the text itself, ignoring the data's labels)"""

    name = "keyword"
    Options = KeywordOptions
    default_metric = "accuracy"
    metric_names = ("accuracy",)

    def load(self):
        dd, report = load_raw(self.spec.data)
        require_columns(self.spec.name, dd, [self.spec.data.text], "set data.text")
        return Raw(dd, ("absent", "present"), report)

    def prepare(self, raw, tokenizer, arch, max_length, cache=None):
        from transformers import DataCollatorWithPadding

        index = label_index(raw.labels)

        def encode(batch):
            enc = dict(tokenizer(batch["text"], truncation=True, max_length=max_length))
            enc["labels"] = [index["present" if self.options.keyword in t else "absent"] for t in batch["text"]]
            return enc

        return Prepared(map_splits(raw.splits, encode, "tokenising", cache), MetaCollator(DataCollatorWithPadding(tokenizer)),
                        Head(HeadKind.SEQUENCE, labels=raw.labels), raw.labels, tokenizer, arch)

    def loss(self, outputs, batch, prep):
        return cross_entropy(outputs.logits, batch["labels"])

    def decode(self, outputs, batch, prep, adapter):
        return [{"pred": max(range(len(p)), key=p.__getitem__)} for p in softmax_list(outputs.logits)]

    def compute_metrics(self, prep, predictions, references, calibration=None):
        return {"accuracy": sum(p["pred"] == r for p, r in zip(predictions, references)) / max(len(references), 1)}


class HeadAndNormsOptions(Options):
    norms: bool = True


class HeadAndNorms(Method):
    """Train the task head and, optionally, the layer norms."""

    name = "head_and_norms"
    Options = HeadAndNormsOptions
    default_lr = lrs(1e-2)

    def apply(self, model, options, ctx):
        freeze_all_but(model, lambda n: in_head(n, ctx.head_modules) or (options.norms and "LayerNorm" in n))
        ctx.notes["norms"] = options.norms
        return model
