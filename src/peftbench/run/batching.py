"""How features become batches: dynamic padding (the task's collator: each batch padded to its longest row),
the studies' fixed padding (``train.padding: max_length``: every batch padded to ``max_length``, for exact
reproduction) and length-grouped sampling (``train.group_by_length``: rows of similar length batched together,
transformers' LengthGroupedSampler, so less padding is computed)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

INPUT_ALIGNED = {"input_ids": "pad", "attention_mask": 0, "token_type_ids": 0, "labels": -100}


class FixedPadding:
    """Pad what the task's collator returns to ``max_length`` along the token axis, on the side the rows are
    padded on (``side``); targets aligned with the inputs (per-token labels) are padded with -100."""

    def __init__(self, collator, max_length: int, pad_id: int, side: str):
        self.collator, self.max_length, self.pad_id, self.side = collator, max_length, pad_id, side

    def __call__(self, features):
        batch = self.collator(features)
        ids = batch.get("input_ids")
        if not torch.is_tensor(ids) or ids.shape[-1] >= self.max_length:
            return batch
        width = ids.shape[-1]
        for key, value in INPUT_ALIGNED.items():
            t = batch.get(key)
            if torch.is_tensor(t) and t.shape == ids.shape:
                fill = self.pad_id if value == "pad" else value
                pad = t.new_full((*t.shape[:-1], self.max_length - width), fill)
                batch[key] = torch.cat([pad, t] if self.side == "left" else [t, pad], dim=-1)
        return batch


def lengths(features) -> list[int]:
    """Each row's length in tokens (a multiple-choice row: its longest choice)."""
    out = []
    for batch in features.select_columns(["input_ids"]).iter(batch_size=10_000):
        for ids in batch["input_ids"]:
            out.append(max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids))
    return out


def collator_for(prep, train, max_length: int) -> object:
    if train.padding == "dynamic":
        return prep.collator
    from ..families import HeadKind

    tok = prep.tokenizer
    token_level = prep.head.kind in (HeadKind.TOKEN, HeadKind.SPAN)  # these pad on the right (positions)
    return FixedPadding(prep.collator, max_length, tok.pad_token_id or 0, "right" if token_level else tok.padding_side)


def train_loader(prep, train, max_length: int, indices, generator, row_lengths=None) -> DataLoader:
    data = prep.features["train"].select(indices)
    if train.group_by_length:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(train.batch_size, lengths=[row_lengths[i] for i in indices], generator=generator)
        return DataLoader(data, batch_size=train.batch_size, sampler=sampler,
                          collate_fn=collator_for(prep, train, max_length))
    return DataLoader(data, batch_size=train.batch_size, shuffle=True, collate_fn=collator_for(prep, train, max_length),
                      generator=generator)


def eval_loader(prep, train, max_length: int, split: str) -> DataLoader:
    """Evaluation batches: ``train.eval_batch_size`` (default: twice the training batch; no gradients are kept)."""
    return DataLoader(prep.features[split], batch_size=train.eval_batch_size or 2 * train.batch_size,
                      collate_fn=collator_for(prep, train, max_length))
