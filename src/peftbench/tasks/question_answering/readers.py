"""Span QA readers: SQuAD JSON files, JSON lines (ParsiNLU), and every answer layout -> (texts, starts)."""
from __future__ import annotations

import json
from pathlib import Path

from ...data.loading import DataError


def _read_squad_json(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    try:
        return _squad_rows(data)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not SQuAD JSON (data -> paragraphs -> context, qas -> question, answers): "
                        f"{type(exc).__name__} {exc}") from None


def _squad_rows(data) -> list[dict]:
    rows = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                columns = {"text": [a["text"] for a in answers], "answer_start": [a["answer_start"] for a in answers]}
                parse_answers(columns, para["context"])  # a DataError where the layout is wrong
                if not isinstance(qa["question"], str):
                    raise DataError(f"question {str(qa['question'])[:60]!r} is not text")
                rows.append({"id": str(qa.get("id", len(rows))), "context": para["context"], "question": qa["question"],
                             "answers": columns})
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
                    if not isinstance(r, dict):
                        raise DataError(f"{path}:{n}: each line must be a JSON object (got {type(r).__name__})")
                    try:
                        r["answers"] = _as_squad(r.get("answers"), r.get("passage", r.get("context", "")))
                    except DataError as exc:
                        raise DataError(f"{path}:{n}: {exc}") from None
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


LAYOUTS = ("SQuAD columns {text: [...], answer_start: [...]}, a string, or a list of [start, text] pairs or of "
           "strings")


def parse_answers(raw, context: str) -> tuple[list[str], list[int]]:
    """Any supported answer layout -> (texts, character starts; -1 where the text is not in the context).
    Anything else is a DataError naming the layouts allowed."""
    def bad(why: str):
        return DataError(f"answers {str(raw)[:60]!r}: {why}; expected {LAYOUTS}")

    if not isinstance(context, str):
        raise DataError(f"context {str(context)[:60]!r} is not text")
    if raw is None:
        return [], []
    if isinstance(raw, dict):  # SQuAD columns
        texts = raw.get("text") or []
        texts = [texts] if isinstance(texts, str) else texts
        starts = raw.get("answer_start")
        starts = [starts] if isinstance(starts, int) else starts if starts is not None else [-2] * len(texts)
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise bad("'text' must be a list of strings")
        if not isinstance(starts, list) or len(starts) != len(texts) or \
                not all(isinstance(x, int) and not isinstance(x, bool) for x in starts):
            raise bad("'answer_start' must be a list of integers, one per text")
    elif isinstance(raw, str):
        texts, starts = ([raw] if raw.strip() else []), [-2] * bool(raw.strip())
    elif isinstance(raw, (list, tuple)):  # list of [start, text] pairs (ParsiNLU) or of strings
        texts, starts = [], []
        for a in raw:
            if isinstance(a, (list, tuple)) and len(a) == 2:
                st, tx = (a[0], a[1]) if isinstance(a[1], str) else (a[1], a[0])
                if not isinstance(tx, str) or not isinstance(st, int) or isinstance(st, bool):
                    raise bad(f"the pair {a!r} is not [start, text]")
                texts.append(tx)
                starts.append(st)
            elif isinstance(a, str):
                texts.append(a)
                starts.append(-2)
            else:
                raise bad(f"the element {str(a)[:30]!r} is neither a [start, text] pair nor a string")
    else:
        raise bad(f"{type(raw).__name__} is not an answer layout")
    fixed = []
    for t, s in zip(texts, starts):
        if s >= 0 and context[s:s + len(t)] == t:
            fixed.append(s)
        else:  # text only, or a wrong offset: locate the text
            fixed.append(context.find(t) if t else -1)
    return texts, fixed
