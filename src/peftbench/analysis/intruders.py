"""Intruder dimensions (Shuttleworth et al., "LoRA vs Full Fine-tuning: An Illusion of Equivalence", 2024).

For a weight matrix before (W0) and after fine-tuning (W), take the left singular vectors of both. A top-k
singular vector u_j of W is an *intruder* when its largest absolute cosine similarity with any singular
vector of W0 is below a threshold: fine-tuning introduced a direction the pre-trained matrix did not have.
The paper finds LoRA introduces intruder dimensions where full fine-tuning mostly does not.
"""
from __future__ import annotations

import torch


def intruder_count(w0: torch.Tensor, w: torch.Tensor, top_k: int = 10, threshold: float = 0.5) -> tuple[int, float]:
    """(number of intruders among W's top-k left singular vectors, the smallest of their max similarities)."""
    u0 = torch.linalg.svd(w0.double(), full_matrices=False).U
    u = torch.linalg.svd(w.double(), full_matrices=False).U[:, :top_k]
    best = (u.T @ u0).abs().max(dim=1).values  # per top singular vector of W: its closest pre-trained direction
    return int((best < threshold).sum()), float(best.min())


def intruder_dimensions(before: dict, after: dict, top_k: int = 10, threshold: float = 0.5) -> dict:
    """Per matrix (the names of ``before``) and in total: intruders among the top-k singular vectors."""
    per_matrix, total, changed, closest = {}, 0, 0, 1.0
    for name, w0 in before.items():
        w = after.get(name)
        if w is None or w.shape != w0.shape:
            continue
        if torch.equal(w.to(w0.dtype), w0):
            per_matrix[name] = 0
            continue
        changed += 1
        n, low = intruder_count(w0, w.to(w0.dtype), top_k, threshold)
        per_matrix[name] = n
        total += n
        closest = min(closest, low)
    return {"top_k": top_k, "threshold": threshold, "matrices": len(per_matrix), "changed_matrices": changed,
            "total": total, "lowest_similarity": closest, "per_matrix": per_matrix}
