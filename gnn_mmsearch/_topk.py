"""Top-k with a fixed order among ties, shared by evaluation and serving."""
from __future__ import annotations

import torch


def top_k_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Column ids of each row's ``k`` best ``scores``, best first, tied scores by lower id: the top 10 is the same
    whether 10 or 50 are asked (``torch.topk`` orders ties as its kernel happens to), which matters for lexical and
    graph baselines whose scores tie by the hundred."""
    k = min(k, scores.size(1))
    if k == 0:
        return torch.empty(scores.size(0), 0, dtype=torch.long, device=scores.device)
    kth = scores.topk(k, dim=1).values[:, -1:]
    keep, tied = scores >= kth, scores == kth
    room = k - (keep & ~tied).sum(1)  # how many of the tied each row takes, lowest ids first
    crowded = (tied.sum(1) > room).nonzero().flatten()  # rows with more ties than room (few, but for baselines)
    if crowded.numel():
        keep[crowded] &= ~tied[crowded] | (tied[crowded].cumsum(1) <= room[crowded, None])
    ids = keep.nonzero()[:, 1].view(scores.size(0), k)  # ascending ids per row
    order = scores.gather(1, ids).sort(dim=1, descending=True, stable=True).indices
    return ids.gather(1, order)
