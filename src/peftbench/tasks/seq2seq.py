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
from typing import Optional

from ..options import Options

from ..data.loading import DataError, _ensure_splits, cap_splits, load_raw
from ..families import Head, HeadKind
from .base import (Metric, MetaCollator, Prepared, Raw, Task, carry_group, cross_entropy, map_splits, model_inputs,
                   require_columns, require_text, with_group)


def _meteor():
    """nltk's METEOR, or None when nltk or its WordNet data is missing (it cannot be fetched offline)."""
    try:
        import nltk
        from nltk.translate.meteor_score import meteor_score

        nltk.data.find("corpora/wordnet")
        return meteor_score
    except (ImportError, LookupError):
        return None


class Seq2SeqOptions(Options):
    source_file: Optional[str] = None  # two line-aligned text files (relative to data.source when a folder)
    target_file: Optional[str] = None
    prefix: str = ""  # put before every source, e.g. T5's "translate English to Persian: "
    separator: str = "\n"  # decoders read <source><separator> and continue with the target


class Seq2Seq(Task):
    name = "seq2seq"
    head_kind = HeadKind.GENERATION
    Options = Seq2SeqOptions
    generative = True
    default_metric = "chrf"
    metrics = (*Metric.many("bleu", "chrf", percent=True), Metric("meteor"))
    pes_weights = {"bleu": 1.0}

    def load(self) -> Raw:
        spec = self.spec.data
        if self.options.source_file or self.options.target_file:
            dd, report = self._load_line_files()
        else:
            dd, report = load_raw(spec)
        require_columns(self.spec.name, dd, [spec.text, spec.label], "set data.text (source) and data.label (target)")
        require_text(self.spec.name, dd, [spec.text, spec.label])
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
        return Raw(dd, (), report)

    def _load_line_files(self):
        spec = self.spec.data
        root = Path(spec.source).expanduser()
        base = root if root.is_dir() else Path(".")
        paths = []
        for key in ("source_file", "target_file"):
            if not getattr(self.options, key):
                raise DataError(f"data.options: give both source_file and target_file (missing {key})")
            p = Path(getattr(self.options, key)).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.exists():
                raise DataError(f"data.options.{key}: file '{p}' does not exist")
            paths.append(p)
        src, tgt = (p.read_text(encoding="utf-8").splitlines() for p in paths)
        if len(src) != len(tgt):
            raise DataError(f"line-aligned files differ in length: {paths[0].name} has {len(src)} lines, "
                            f"{paths[1].name} has {len(tgt)}; they must align line by line")
        from datasets import Dataset, DatasetDict

        report = {"source": f"{paths[0]} | {paths[1]}"}
        dd = _ensure_splits(DatasetDict(train=Dataset.from_dict({spec.text: src, spec.label: tgt})), spec, report)
        return cap_splits(dd, spec, report), report

    def prepare(self, raw, tokenizer, arch, max_length, cache=None) -> Prepared:
        spec = self.spec.data
        prefix, sep = self.options.prefix, self.options.separator
        continues = arch.continues_prompt
        eos = tokenizer.eos_token_id

        def encode(batch):
            sources = [prefix + s for s in batch[spec.text]]
            targets = list(batch[spec.label])
            if continues:  # <source><sep><target><eos>, trained on the target only
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
            return carry_group(batch, enc)

        from transformers import DataCollatorForSeq2Seq

        # labels padded with -100 on the tokenizer's side (decoders: left, aligned with input_ids)
        collator = MetaCollator(DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt"))
        return Prepared(map_splits(raw.splits, encode, "tokenising", cache), collator, Head(self.head_kind), (),
                        tokenizer, arch)

    def forward(self, adapter, batch, prep):
        if prep.arch.continues_prompt:
            return adapter(model_inputs(batch))
        labels = batch["labels"]
        return adapter(model_inputs(batch), width=labels.shape[1], decoder_input_ids=adapter.decoder_inputs(labels))

    def loss(self, outputs, batch, prep):
        if prep.arch.continues_prompt:  # the output at position t predicts token t + 1
            return cross_entropy(outputs.logits[:, :-1], batch["labels"][:, 1:])
        return cross_entropy(outputs.logits, batch["labels"])

    def decode(self, outputs, batch, prep, adapter):
        tok = prep.tokenizer
        gen = self.spec.generation
        kw = dict(max_new_tokens=gen.max_new_tokens, num_beams=gen.num_beams, length_penalty=gen.length_penalty,
                  do_sample=False, pad_token_id=tok.pad_token_id)
        if prep.arch.continues_prompt:
            prompt = tok.pad({"input_ids": batch["_prompt"]}, return_tensors="pt", padding_side="left")
            prompt = {k: v.to(batch["input_ids"].device) for k, v in prompt.items()}
            out = adapter.generate(**prompt, eos_token_id=tok.eos_token_id, **kw)
            new = out[:, prompt["input_ids"].shape[1]:]
        else:
            new = adapter.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return [with_group({"prediction": t.strip()}, batch, i) for i, t in enumerate(texts)]

    def references(self, batch):
        return list(batch["_target"])

    def compute_metrics(self, prep, predictions, references, calibration=None):
        return translation_metrics([p["prediction"] for p in predictions], references)

    def metric_info(self, prep):
        import sacrebleu

        info = {}
        for name, metric in (("bleu", sacrebleu.metrics.BLEU()), ("chrf", sacrebleu.metrics.CHRF())):
            metric.corpus_score(["x"], [["x"]])  # a signature needs one evaluation (it records the references count)
            info[f"{name}_signature"] = str(metric.get_signature())
        if _meteor() is None:
            info["meteor"] = "not computed: nltk WordNet data is not installed (nltk.download('wordnet'))"
        return info


def translation_metrics(hyps: list[str], references: list[str]) -> dict:
    """Corpus BLEU and chrF (sacrebleu defaults) and mean sentence METEOR where nltk's WordNet is installed."""
    import sacrebleu

    if not hyps:
        raise ValueError("BLEU / chrF of an empty corpus are undefined: the split has no sentence pairs")
    out = {"bleu": sacrebleu.metrics.BLEU().corpus_score(hyps, [references]).score,
           "chrf": sacrebleu.metrics.CHRF().corpus_score(hyps, [references]).score}
    meteor = _meteor()
    if meteor is not None:
        out["meteor"] = sum(meteor([r.split()], h.split()) for h, r in zip(hyps, references)) / max(len(hyps), 1)
    return out
