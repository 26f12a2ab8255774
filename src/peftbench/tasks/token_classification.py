"""Token classification (NER) for encoders, encoder-decoders (encoder states) and decoders.

Data: CoNLL-style files (``.txt``, ``.conll``, ``.bio``, ``.iob``: one ``token<sep>tag`` per line, the
separator TAB, ``|`` or a space (the last one on the line), a blank line between sentences; ``-DOCSTART-``
lines skipped), JSON / JSONL rows with token and tag lists (``data.text``, ``data.label``; defaults
``tokens`` / ``tags``), or hub datasets (integer tags are named from the dataset's ClassLabel).  Files
are read by a generator into Arrow on disk and tokenised in batches, so a 500k-sentence corpus prepares
in bounded memory.

``data.options``:
  ``scheme``: ``IOB2`` (BIO) or ``IOBES`` (default: IOBES when any tag starts with E-/S-);
  ``label_all_subtokens``: false (default: the first sub-token of a word carries its tag, the others are
  ignored) or true (every sub-token is trained; continuation pieces of a B- word get its I- tag).
Tags written ``B_PER`` (PEYMA) are read as ``B-PER``.  Words cut off by ``max_length`` are predicted
``O`` and counted in the run's ``metric_info``.

Metrics (word level, first sub-token): token accuracy and macro precision / recall / F1 over the tag
classes (what the Persian study reports, scikit-learn), and entity-level precision / recall / F1 from
seqeval in strict mode with the scheme, overall (micro) and per entity type (``entity_f1/PER`` ...).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

from ..data.loading import DataError, load_raw
from ..families import Head, HeadKind
from ..options import Options
from .base import (Metric, Prepared, Raw, WeightedTask, carry_group, cross_entropy, label_index, map_splits, require_columns,
                   right_padding_collator, with_group)
from .classification import MACRO_NOTE

CONLL_SUFFIXES = (".txt", ".conll", ".bio", ".iob")
PREFIX = re.compile(r"^([BIESL])[_-](.+)$")


def normalise_tag(tag: str) -> str:
    """``B_PER`` -> ``B-PER``; ``L-`` (BILOU) -> ``E-``, ``U-`` stays unknown; ``O`` unchanged."""
    tag = tag.strip()
    m = PREFIX.match(tag)
    if not m:
        return tag
    p = {"L": "E"}.get(m.group(1), m.group(1))
    return f"{p}-{m.group(2)}"


def read_conll(path: str, stamp: str = ""):
    """Yield {"tokens": [...], "tags": [...]} per sentence, streaming (one sentence in memory). ``stamp``
    (size and mtime) only keys the datasets cache, so an edited file is read again."""
    tokens, tags = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                if tokens:
                    yield {"tokens": tokens, "tags": tags}
                    tokens, tags = [], []
                continue
            if line.startswith("-DOCSTART-"):
                continue
            for sep in ("\t", "|", " "):
                if sep in line.strip():
                    tok, _, tag = line.strip().rpartition(sep)
                    break
            else:
                raise DataError(f"{path}:{n}: no separator (TAB, '|' or space) between token and tag: {line[:60]!r}")
            if not tok.strip():
                raise DataError(f"{path}:{n}: empty token before the tag: {line[:60]!r}")
            tokens.append(tok.strip())
            tags.append(tag.strip())
    if tokens:
        yield {"tokens": tokens, "tags": tags}


def conll_reader(path: Path):
    """load_raw's reader: CoNLL-style files stream into Arrow (memory-bounded); other files: None."""
    if path.suffix.lower() not in CONLL_SUFFIXES:
        return None
    from datasets import Dataset

    from ..data.loading import reraise_data_error

    st = path.stat()
    try:
        return Dataset.from_generator(read_conll, gen_kwargs={"path": str(path), "stamp": f"{st.st_size}-{st.st_mtime_ns}"})
    except Exception as exc:  # datasets wraps the reader's DataError (file:line) in DatasetGenerationError
        reraise_data_error(exc, f"CoNLL file '{path}' could not be read")


conll_reader.suffixes = CONLL_SUFFIXES


class TokenClassificationOptions(Options):
    scheme: Optional[Literal["IOB2", "IOBES"]] = None  # default: IOBES when a tag starts with E- or S-
    label_all_subtokens: bool = False  # train every sub-token (continuations of a B- word get its I- tag)


class TokenClassification(WeightedTask):
    name = "token_classification"
    head_kind = HeadKind.TOKEN
    Options = TokenClassificationOptions
    default_metric = "entity_f1"
    metrics = Metric.many("token_accuracy", "macro_precision", "macro_recall", "macro_f1", "entity_precision",
                      "entity_recall", "entity_f1")
    pes_weights = {"token_accuracy": 1.0, "macro_f1": 3.0, "macro_precision": 2.0, "macro_recall": 4.0}  # Persian study, NER

    def load(self) -> Raw:
        spec = self.spec.data
        tcol = spec.text if spec.text != "text" else "tokens"
        lcol = spec.label if spec.label != "label" else "tags"
        dd, report = load_raw(spec, reader=conll_reader)
        require_columns(self.spec.name, dd, [tcol, lcol], "set data.text (tokens) and data.label (tags)")
        names = getattr(dd["train"].features[lcol], "feature", None)
        names = getattr(names, "names", None)  # hub ClassLabel

        def norm(batch):
            tags = [[names[t] if names else normalise_tag(str(t)) for t in row] for row in batch[lcol]]
            bad = [i for i, (a, b) in enumerate(zip(batch[tcol], tags)) if len(a) != len(b)]
            if bad:
                raise DataError(f"task '{self.spec.name}': a sentence has {len(batch[tcol][bad[0]])} tokens but "
                                f"{len(tags[bad[0]])} tags")
            return carry_group(batch, {"tokens": batch[tcol], "tags": tags})

        dd = map_splits(dd, norm, "tags")
        for split in dd:
            before = len(dd[split])
            dd[split] = dd[split].filter(lambda t: len(t) > 0, input_columns="tokens")
            if len(dd[split]) < before:
                report.setdefault("dropped_empty_sentences", {})[split] = before - len(dd[split])
        seen = {split: set() for split in dd}  # one pass over every split's tags
        for split in dd:
            for batch in dd[split].iter(batch_size=10_000):
                for row in batch["tags"]:
                    seen[split].update(row)
        tags = sorted(set().union(*seen.values()), key=lambda t: (t != "O", t.split("-", 1)[-1], t))
        bad = [t for t in tags if t != "O" and not PREFIX.match(t)]
        if bad:
            raise DataError(f"task '{self.spec.name}': tag(s) {bad[:5]} are not O or B-/I-/E-/S- prefixed")
        unseen = [t for t in tags if t not in seen["train"]]
        if unseen:
            report["tags_not_in_train"] = unseen
        report.update(tags=tags, scheme=self.scheme(tags), rows={k: len(v) for k, v in dd.items()})
        from datasets import DatasetDict

        return Raw(DatasetDict(dd), tuple(tags), report)

    def scheme(self, tags) -> str:
        return self.options.scheme or ("IOBES" if any(t[:2] in ("E-", "S-") for t in tags) else "IOB2")

    def prepare(self, raw, tokenizer, arch, max_length, cache=None) -> Prepared:
        if not tokenizer.is_fast:
            raise ValueError("token classification needs a fast tokenizer (word_ids); this model's tokenizer is slow")
        index = label_index(raw.labels)
        all_sub = self.options.label_all_subtokens

        def encode(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            labels, words = [], []
            for i, tags in enumerate(batch["tags"]):
                wid = enc.word_ids(i)
                lab, prev = [], None
                for w in wid:
                    if w is None:
                        lab.append(-100)
                    elif w != prev:
                        lab.append(index[tags[w]])
                    elif all_sub:
                        t = tags[w]
                        lab.append(index.get("I-" + t[2:], index[t]) if t.startswith("B-") else index[t])
                    else:
                        lab.append(-100)
                    prev = w
                labels.append(lab)
                words.append([-1 if w is None else w for w in wid])
            out = dict(enc)
            out.update(labels=labels, _word_ids=words, _tags=batch["tags"])
            return carry_group(batch, out)

        return Prepared(map_splits(raw.splits, encode, "tokenising", cache, batch_size=1000), right_padding_collator(tokenizer),
                        Head(self.head_kind, labels=raw.labels), raw.labels, tokenizer, arch,
                        extra={"scheme": self.scheme(raw.labels)})

    def loss(self, outputs, batch, prep):
        return cross_entropy(outputs.logits, batch["labels"], prep.extra.get("class_weights"))

    def decode(self, outputs, batch, prep, adapter):
        pred_ids = outputs.logits.argmax(-1).tolist()
        preds = []
        for i, (wids, tags) in enumerate(zip(batch["_word_ids"], batch["_tags"])):
            words = ["O"] * len(tags)
            seen = set()
            for pos, w in enumerate(wids):  # right padding: position = token index
                if w >= 0 and w not in seen:
                    seen.add(w)
                    words[w] = prep.labels[pred_ids[i][pos]]
            preds.append(with_group({"tags": words, "_truncated_words": len(tags) - len(seen)}, batch, i))
        return preds

    def references(self, batch):
        return [list(t) for t in batch["_tags"]]

    def finalize(self, prep, split, predictions, references, calibration=None):
        truncated = sum(p.pop("_truncated_words") for p in predictions)
        return predictions, references, {f"truncated_words_{split}": truncated}

    def metric_info(self, prep):
        return {"macro": MACRO_NOTE.replace("labels", "tags"), "entities": f"seqeval, strict mode, {prep.extra['scheme']}"}

    def compute_metrics(self, prep, predictions, references, calibration=None):
        return ner_metrics([p["tags"] for p in predictions], references, list(prep.labels), prep.extra["scheme"])


def ner_metrics(pred_tags: list[list[str]], ref_tags: list[list[str]], labels: list[str], scheme: str = "IOB2") -> dict:
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2, IOBES
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    flat_p = [t for s in pred_tags for t in s]
    flat_r = [t for s in ref_tags for t in s]
    # macro over the tags present in gold or predictions (scikit-learn's default), as for classification
    p, r, f, _ = precision_recall_fscore_support(flat_r, flat_p, average="macro", zero_division=0)
    out = {"token_accuracy": float(accuracy_score(flat_r, flat_p)), "macro_precision": float(p),
           "macro_recall": float(r), "macro_f1": float(f)}
    rep = classification_report(ref_tags, pred_tags, mode="strict", scheme=IOBES if scheme == "IOBES" else IOB2,
                                output_dict=True, zero_division=0)
    micro = rep.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    out.update(entity_precision=float(micro["precision"]), entity_recall=float(micro["recall"]),
               entity_f1=float(micro["f1-score"]))
    for etype, v in rep.items():
        if etype not in ("micro avg", "macro avg", "weighted avg"):
            out[f"entity_f1/{etype}"] = float(v["f1-score"])
    return out
