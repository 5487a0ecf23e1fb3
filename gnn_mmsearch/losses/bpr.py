"""Pairwise BPR loss and the embedding regularisers of MMRec's BPR / LightGCN (norms) and LayerGCN (squared norms)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BPRLoss(nn.Module):
    """``-mean log sigmoid(pos - neg)`` (Rendle et al., 2009)."""

    def forward(self, pos_score: torch.Tensor, neg_score: torch.Tensor) -> torch.Tensor:
        return -F.logsigmoid(pos_score - neg_score).mean()


def embedding_norm(*embeddings: torch.Tensor) -> torch.Tensor:
    """Sum of the Frobenius norms of the batch's embeddings divided by the batch size (MMRec's ``EmbLoss``)."""
    return sum(e.norm(p=2) for e in embeddings) / embeddings[-1].size(0)


def squared_norm(*embeddings: torch.Tensor) -> torch.Tensor:
    """Half the sum of the batch's squared embedding entries divided by the batch size (MMRec's ``L2Loss``, which
    LayerGCN adds to a BPR loss summed over the batch, expressed per interaction)."""
    return sum(e.pow(2).sum() for e in embeddings) / (2 * embeddings[-1].size(0))
