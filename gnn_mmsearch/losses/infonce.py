"""InfoNCE over L2-normalised embeddings with in-batch and sampled negatives."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    """``-log softmax`` of each anchor's positive among the batch's positives and extra sampled negatives.

    ``anchor [B, D]``, ``positive [B, D]``, optional ``negatives [K, D]`` shared by the batch. With
    ``symmetric=True`` the positive -> anchor direction is added (for symmetric relations such as co-purchase).
    ``in_batch=False`` keeps only each anchor's own positive and the shared negatives (sampled softmax): in-batch
    positives are drawn by popularity, so as negatives they push popular items down.
    """

    def __init__(self, temperature: float = 0.1, symmetric: bool = True, in_batch: bool = True):
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric
        self.in_batch = in_batch
        if symmetric and not in_batch:
            raise ValueError("symmetric InfoNCE needs in-batch negatives")

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        if not self.in_batch:
            if negatives is None or not negatives.numel():
                raise ValueError("InfoNCE without in-batch negatives needs shared negatives")
            logits = torch.cat([(anchor * positive).sum(1, keepdim=True), anchor @ negatives.t()], dim=1)
            return F.cross_entropy(logits / self.temperature, torch.zeros_like(logits[:, 0], dtype=torch.long))
        target = torch.arange(anchor.size(0), device=anchor.device)
        logits = anchor @ positive.t()
        if negatives is not None and negatives.numel():
            logits = torch.cat([logits, anchor @ negatives.t()], dim=1)
        loss = F.cross_entropy(logits / self.temperature, target)
        if self.symmetric:
            back = positive @ anchor.t()
            if negatives is not None and negatives.numel():
                back = torch.cat([back, positive @ negatives.t()], dim=1)
            loss = (loss + F.cross_entropy(back / self.temperature, target)) / 2
        return loss
