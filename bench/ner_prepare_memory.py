"""Peak memory of NER feature preparation on a large CoNLL corpus (issue: 500k sentences under 3 GB).

    python bench/ner_prepare_memory.py --sentences 500000 [--tokenizer /path/to/checkpoint]

Writes a synthetic PEYMA-style corpus (``token|TAG`` lines, Persian words, B_/I_ tags), then runs the
token-classification task's load + prepare (the same code a run uses: Arrow on disk, batched tokenisation)
and prints the peak RSS of this process and the wall time.
"""
from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

WORDS = ["تهران", "شهر", "در", "به", "گزارش", "خبرگزاری", "مهر", "سعید", "رئیس", "جمهور", "امروز", "دیروز",
         "سازمان", "ملل", "ایران", "اصفهان", "شیراز", "دانشگاه", "است", "بود", "کرد", "گفت", "درصد", "ریال"]
TAGS = ["PER", "LOC", "ORG", "DAT", "TIM", "MON", "PCT"]


def write_corpus(path: Path, n: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    tokens = 0
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            lines = []
            for _ in range(rng.randint(8, 40)):
                if rng.random() < 0.15:
                    t = rng.choice(TAGS)
                    for j in range(rng.randint(1, 3)):
                        lines.append(f"{rng.choice(WORDS)}|{'B' if j == 0 else 'I'}_{t}")
                else:
                    lines.append(f"{rng.choice(WORDS)}|O")
            tokens += len(lines)
            f.write("\n".join(lines) + "\n\n")
    return tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=500_000)
    ap.add_argument("--tokenizer", default="tiny:bert", help="a checkpoint folder, or tiny:bert (byte-level)")
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    from peftbench.config import ModelSpec, TaskSpec
    from peftbench.models import inspect_model
    from peftbench.tasks.token_classification import TokenClassification

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        n_tokens = write_corpus(Path(tmp) / "train.txt", args.sentences)
        t1 = time.perf_counter()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        task = TokenClassification(TaskSpec(name="big", type="token_classification",
                                            data={"source": tmp, "validation_fraction": 0.01, "test_fraction": 0.01}))
        raw = task.load()
        _, tok, arch, _ = inspect_model(ModelSpec(source=args.tokenizer))
        feats = task.prepare(raw, tok, arch, args.max_length).features
        t2 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"sentences {args.sentences:,} ({n_tokens:,} tokens), tokenizer {args.tokenizer}: "
              f"features train/val/test {len(feats['train']):,}/{len(feats['validation']):,}/{len(feats['test']):,}; "
              f"write {t1 - t0:.0f} s, load+prepare {t2 - t1:.0f} s; peak RSS {peak:,.0f} MB "
              f"(before load {rss0:,.0f} MB); tags {len(raw.labels)}")


if __name__ == "__main__":
    main()
