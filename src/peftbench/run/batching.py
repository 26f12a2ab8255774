"""How features become batches: dynamic padding (the task's collator: each batch padded to its longest row),
the studies' fixed padding (``train.padding: max_length``: every batch padded to ``max_length``, for exact
reproduction) and length-grouped sampling (``train.group_by_length``: rows of similar length batched together,
transformers' LengthGroupedSampler, so less padding is computed)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

INPUT_ALIGNED = {"input_ids": "pad", "attention_mask": 0, "token_type_ids": 0, "labels": -100}


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


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


class RankBatches:
    """One rank's part of the global batches: the sampler's order is cut into batches of ``batch_size`` (what
    one process would train on), and rank ``r`` of ``world`` takes rows r, r+world, ... of each — so the
    ranks' batches together are exactly the single-process batches. A last batch that does not divide is
    topped up with its own first rows, so every rank takes as many steps as the others."""

    def __init__(self, sampler, batch_size: int, rank: int, world: int):
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world

    def __iter__(self):
        order = list(self.sampler)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            batch += [batch[i % len(batch)] for i in range(-len(batch) % self.world)]
            yield batch[self.rank::self.world]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)


def train_loader(prep, train, max_length: int, indices, generator, row_lengths=None, rank: int = 0,
                 world: int = 1) -> DataLoader:
    """Shuffled training batches of ``indices`` (length-grouped where asked); with several processes, this
    rank's share of each (``RankBatches``)."""
    from torch.utils.data import RandomSampler

    data = prep.features["train"].select(indices)
    if train.group_by_length:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(train.batch_size, lengths=[row_lengths[i] for i in indices], generator=generator)
    else:
        sampler = RandomSampler(data, generator=generator)  # what DataLoader(shuffle=True) uses
    collate = collator_for(prep, train, max_length)
    if world > 1:
        return DataLoader(data, batch_sampler=RankBatches(sampler, train.batch_size, rank, world), collate_fn=collate)
    return DataLoader(data, batch_size=train.batch_size, sampler=sampler, collate_fn=collate)


def eval_loader(prep, train, max_length: int, split: str, rows: range | None = None) -> DataLoader:
    """Evaluation batches: ``train.eval_batch_size`` (default: twice the training batch; no gradients are kept);
    ``rows``: this rank's share of the split."""
    data = prep.features[split]
    if rows is not None and len(rows) != len(data):
        data = data.select(rows)
    return DataLoader(data, batch_size=train.eval_batch_size or 2 * train.batch_size,
                      collate_fn=collator_for(prep, train, max_length))
