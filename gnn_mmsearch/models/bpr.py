"""BPR-MF: user and item ID embeddings, dot-product scores, BPR loss (Rendle et al., 2009), as in MMRec."""
from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import nn

from ..losses import BPRLoss, embedding_norm
from ._recommender import RECOMMENDERS, Recommender


@RECOMMENDERS.register("bpr")
class BPRMF(Recommender):
    def __init__(self, train: sp.csr_matrix, item_features=None, embedding_dim: int = 64, reg_weight: float = 1e-4):
        super().__init__(train)
        self.user_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.num_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.num_items, embedding_dim)))
        self.reg_weight = reg_weight
        self.bpr = BPRLoss()

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb, self.item_emb

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u, p, n = self.user_emb[users], self.item_emb[pos], self.item_emb[neg]
        return self.bpr((u * p).sum(1), (u * n).sum(1)) + self.reg_weight * embedding_norm(u, p, n)
