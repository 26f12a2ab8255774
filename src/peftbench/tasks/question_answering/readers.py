"""Span QA readers: SQuAD JSON files, JSON lines (ParsiNLU), and every answer layout -> (texts, starts)."""
from __future__ import annotations

import json
from pathlib import Path

from ...data.loading import DataError


def _read_squad_json(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                rows.append({"id": str(qa.get("id", len(rows))), "context": para["context"], "question": qa["question"],
                             "answers": {"text": [a["text"] for a in answers],
                                         "answer_start": [a["answer_start"] for a in answers]}})
    return rows


def qa_reader(path: Path):
    """load_raw's reader: SQuAD JSON (nested) and JSON lines read with Python's json, so that answer lists
    mixing offsets and text (ParsiNLU's ``[[start, text]]``) reach the task intact (Arrow would reject them)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            head = f.read(200).lstrip()
        if head.startswith("{") and '"data"' in head:
            from datasets import Dataset

            return Dataset.from_list(_read_squad_json(path))
        return None
    if suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        r = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                    r["answers"] = _as_squad(r.get("answers"), r.get("passage", r.get("context", "")))
                    # other fields may mix types across rows (a number here, a string there): keep them as text
                    rows.append({k: v if k == "answers" or v is None or isinstance(v, str) else
                                 json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else str(v)
                                 for k, v in r.items()})
        from datasets import Dataset

        return Dataset.from_list(rows)
    return None


def _as_squad(raw, context) -> dict:
    texts, starts = parse_answers(raw, context)
    return {"text": texts, "answer_start": starts}


def parse_answers(raw, context: str) -> tuple[list[str], list[int]]:
    """Any supported answer layout -> (texts, character starts; -1 where the text is not in the context)."""
    if raw is None:
        return [], []
    if isinstance(raw, dict):  # SQuAD columns
        texts = list(raw.get("text") or [])
        starts = list(raw.get("answer_start") or [-2] * len(texts))
    elif isinstance(raw, str):
        texts, starts = ([raw] if raw.strip() else []), [-2] * bool(raw.strip())
    else:  # list of [start, text] pairs (ParsiNLU) or of strings
        texts, starts = [], []
        for a in raw:
            if isinstance(a, (list, tuple)) and len(a) == 2:
                st, tx = (a[0], a[1]) if isinstance(a[1], str) else (a[1], a[0])
                texts.append(str(tx))
                starts.append(int(st))
            else:
                texts.append(str(a))
                starts.append(-2)
    fixed = []
    for t, s in zip(texts, starts):
        if s >= 0 and context[s:s + len(t)] == t:
            fixed.append(s)
        else:  # text only, or a wrong offset: locate the text
            fixed.append(context.find(t) if t else -1)
    return texts, fixed
