"""Span QA features: long contexts cut into overlapping windows, answer character spans mapped to tokens."""
from __future__ import annotations


def window_encoder(tokenizer, max_length: int, stride: int, unanswerable: bool):
    """A batched ``map`` function (with indices): each example becomes one feature per window, with the answer's
    start / end token (0 / 0 where the window holds no answer: the null answer), the example index, the
    context offsets of each token (-1 outside the context) and ``_keep`` (False: not trained on)."""

    def encode(batch, idx):
        enc = tokenizer([q.strip() for q in batch["_question"]], batch["_context"], truncation="only_second",
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True)
        mapping = enc.pop("overflow_to_sample_mapping")
        offsets = enc.pop("offset_mapping")
        out = {k: v for k, v in enc.items()}
        out.update(start_positions=[], end_positions=[], _example=[], _offsets=[], _keep=[])
        carried = [c for c in ("_group", "_cluster") if c in batch]
        for c in carried:
            out[c] = []
        for f, ex in enumerate(mapping):
            seq = enc.sequence_ids(f)
            offs = [list(o) if s == 1 else [-1, -1] for o, s in zip(offsets[f], seq)]
            s_pos, e_pos, keep = answer_tokens(offs, [j for j, s in enumerate(seq) if s == 1],
                                               batch["_starts"][ex], batch["_answers"][ex], unanswerable)
            out["start_positions"].append(s_pos)
            out["end_positions"].append(e_pos)
            out["_example"].append(idx[ex])
            out["_offsets"].append(offs)
            out["_keep"].append(keep)
            for c in carried:
                out[c].append(batch[c][ex])
        return out

    return encode


def answer_tokens(offs, ctx_idx, starts, texts, unanswerable: bool) -> tuple[int, int, bool]:
    """(start token, end token, train on this window?) for the first located answer."""
    located = [(s, t) for s, t in zip(starts, texts) if s >= 0]
    if located:
        a_start, text = located[0]
        a_end = a_start + len(text)
        if ctx_idx and offs[ctx_idx[0]][0] <= a_start and offs[ctx_idx[-1]][1] >= a_end:
            return (next(j for j in ctx_idx if offs[j][1] > a_start),
                    next(j for j in reversed(ctx_idx) if offs[j][0] < a_end), True)
        # window without the answer: SQuAD 1.1 trains only on windows holding it
        return 0, 0, unanswerable
    return 0, 0, not texts  # an answer that could not be located: evaluation only
