"""InfoNCE over L2-normalised embeddings with in-batch and sampled negatives."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    """``-log softmax`` of each anchor's positive among the batch's positives and extra sampled negatives.

    ``anchor [B, D]``, ``positive [B, D]``, optional ``negatives [K, D]`` shared by the batch. With
    ``symmetric=True`` the positive -> anchor direction is added (for symmetric relations such as co-purchase).
    """

    def __init__(self, temperature: float = 0.1, symmetric: bool = True):
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
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
