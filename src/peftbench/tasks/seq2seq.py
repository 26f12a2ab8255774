"""Sequence-to-sequence: translation and other generative formulations, for encoder-decoders and decoders.

Data: ``data.text`` is the source column and ``data.label`` the target column, or two line-aligned plain
text files given as ``data.options: {source_file: ..., target_file: ...}`` (relative to ``data.source`` when
that is a folder); validation / test are carved from them when not given.  ``data.options.prefix`` is
put before every source (e.g. T5's "translate English to Persian: "); decoders read
``<source><separator>`` and continue with the target (``data.options.separator``, default a newline) and
are trained on the target tokens only.

Metrics: BLEU and chrF from sacrebleu (corpus level, signatures stored with the run as
``metric_info``) and METEOR when nltk and its WordNet data are installed.  Generation follows
``task.generation`` (beams, max new tokens); it runs in evaluation, timed apart from training.
"""
from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from ..data.loading import DataError, _ensure_splits, cap_splits, load_raw
from ..models import DECODER, ENCODER
from .base import MetaCollator, Task, model_inputs, with_group


def _meteor():
    """nltk's METEOR, or None when nltk or its WordNet data is missing (it cannot be fetched offline)."""
    try:
        import nltk
        from nltk.translate.meteor_score import meteor_score

        nltk.data.find("corpora/wordnet")
        return meteor_score
    except (ImportError, LookupError):
        return None


class Seq2Seq(Task):
    name = "seq2seq"
    generative = True
    default_metric = "chrf"
    metric_names = ("bleu", "chrf", "meteor")
    pes_weights = {"bleu": 1.0}

    def __init__(self, spec):
        super().__init__(spec)
        self.family = None

    @property
    def peft_task_type(self):
        return "CAUSAL_LM" if self.family == DECODER else "SEQ_2_SEQ_LM"

    def load(self):
        spec = self.spec.data
        opts = spec.options
        if "source_file" in opts or "target_file" in opts:
            dd, report = self._load_line_files()
        else:
            dd, report = load_raw(spec)
        for col in (spec.text, spec.label):
            if col not in dd["train"].column_names:
                raise DataError(f"task '{self.spec.name}': column '{col}' not in the data (columns: "
                                f"{', '.join(dd['train'].column_names)}); set data.text (source) and data.label (target)")
        empty = {}
        for split in dd:
            before = len(dd[split])
            dd[split] = dd[split].filter(lambda s, t: bool(str(s or "").strip()) and bool(str(t or "").strip()),
                                         input_columns=[spec.text, spec.label])
            if len(dd[split]) < before:
                empty[split] = before - len(dd[split])
        if empty:
            report["dropped_empty_pairs"] = empty
        report["rows"] = {k: len(v) for k, v in dd.items()}
        return dd, report

    def _load_line_files(self):
        spec = self.spec.data
        root = Path(spec.source).expanduser()
        base = root if root.is_dir() else Path(".")
        paths = []
        for key in ("source_file", "target_file"):
            if key not in spec.options:
                raise DataError(f"data.options: give both source_file and target_file (missing {key})")
            p = Path(spec.options[key]).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.exists():
                raise DataError(f"data.options.{key}: file '{p}' does not exist")
            paths.append(p)
        src, tgt = (p.read_text(encoding="utf-8").splitlines() for p in paths)
        if len(src) != len(tgt):
            raise DataError(f"line-aligned files differ in length: {paths[0].name} has {len(src)} lines, "
                            f"{paths[1].name} has {len(tgt)}; they must align line by line")
        report = {"source": f"{paths[0]} | {paths[1]}"}
        dd = _ensure_splits(DatasetDict(train=Dataset.from_dict({spec.text: src, spec.label: tgt})), spec, report)
        return cap_splits(dd, spec, report), report

    def auto_class(self, family, config):
        if family == ENCODER:
            raise ValueError(f"task '{self.spec.name}' (seq2seq) needs an encoder-decoder or decoder model; "
                             f"{config.model_type} is an encoder")
        self.family = family
        return AutoModelForCausalLM if family == DECODER else AutoModelForSeq2SeqLM

    def prepare(self, dd, tokenizer, max_length):
        spec = self.spec.data
        prefix = spec.options.get("prefix", "")
        sep = spec.options.get("separator", "\n")
        decoder = self.family == DECODER
        eos = tokenizer.eos_token_id

        def encode(batch):
            sources = [prefix + s for s in batch[spec.text]]
            targets = list(batch[spec.label])
            if decoder:
                prompts = tokenizer([s + sep for s in sources], truncation=True, max_length=max_length // 2)["input_ids"]
                tgt = tokenizer(targets, add_special_tokens=False, truncation=True,
                                max_length=max_length - max(len(p) for p in prompts) - 1)["input_ids"]
                ids = [p + t + [eos] for p, t in zip(prompts, tgt)]
                enc = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids],
                       "labels": [[-100] * len(p) + t + [eos] for p, t in zip(prompts, tgt)], "_prompt": prompts}
            else:
                enc = dict(tokenizer(sources, truncation=True, max_length=max_length))
                enc["labels"] = tokenizer(text_target=targets, truncation=True, max_length=max_length)["input_ids"]
            enc["_target"] = targets
            if "_group" in batch:
                enc["_group"] = batch["_group"]
            return enc

        return {s: ds.map(encode, batched=True, remove_columns=ds.column_names, desc=f"tokenising {s}")
                for s, ds in dd.items()}

    def collator(self, tokenizer):
        return seq2seq_collator(tokenizer)

    def loss(self, outputs, batch):
        return outputs.loss

    def decode(self, outputs, batch, model):
        tok = self.tokenizer
        gen = self.spec.generation
        kw = dict(max_new_tokens=gen.max_new_tokens, num_beams=gen.num_beams, length_penalty=gen.length_penalty,
                  do_sample=False, pad_token_id=tok.pad_token_id)
        if self.family == DECODER:
            prompt = tok.pad({"input_ids": batch["_prompt"]}, return_tensors="pt", padding_side="left")
            prompt = {k: v.to(batch["input_ids"].device) for k, v in prompt.items()}
            out = model.generate(**prompt, eos_token_id=tok.eos_token_id, **kw)
            new = out[:, prompt["input_ids"].shape[1]:]
        else:
            inputs = model_inputs(batch)
            new = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **kw)
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return [with_group({"prediction": t.strip()}, batch, i) for i, t in enumerate(texts)]

    def references(self, batch):
        return list(batch["_target"])

    def compute_metrics(self, predictions, references):
        import sacrebleu

        hyps = [p["prediction"] for p in predictions]
        bleu = sacrebleu.metrics.BLEU()
        chrf = sacrebleu.metrics.CHRF()
        b = bleu.corpus_score(hyps, [references])
        c = chrf.corpus_score(hyps, [references])
        self.metric_info = {"bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}
        out = {"bleu": b.score, "chrf": c.score}
        meteor = _meteor()
        if meteor is not None:
            out["meteor"] = sum(meteor([r.split()], h.split()) for h, r in zip(hyps, references)) / max(len(hyps), 1)
        else:
            self.metric_info["meteor"] = "not computed: nltk WordNet data is not installed (nltk.download('wordnet'))"
        return out


def seq2seq_collator(tokenizer):
    """Pad inputs on the tokenizer's side and labels the same way with -100 (decoders: labels align with
    input_ids, so they are padded on the same, left, side); metadata lists kept by MetaCollator."""

    def collate(features):
        batch = tokenizer.pad([{k: f[k] for k in ("input_ids", "attention_mask")} for f in features],
                              return_tensors="pt")
        width = max(len(f["labels"]) for f in features)
        left = tokenizer.padding_side == "left"
        batch["labels"] = torch.tensor([[-100] * (width - len(f["labels"])) + f["labels"] if left
                                        else f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
        return batch

    return MetaCollator(collate)
