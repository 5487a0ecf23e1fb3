"""LightGCN (He et al., 2020): ID embeddings propagated over the user-item graph with PyG's ``LGConv``, the
layer outputs averaged, BPR loss plus the L2 norm of the layer-0 embeddings, as in MMRec."""
from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import nn

from ..layers import GraphPropagation
from ..losses import BPRLoss, embedding_norm
from ._recommender import RECOMMENDERS, Recommender, user_item_adjacency


@RECOMMENDERS.register("lightgcn")
class LightGCN(Recommender):
    def __init__(self, train: sp.csr_matrix, item_features=None, embedding_dim: int = 64, layers: int = 2,
                 reg_weight: float = 1e-4):
        super().__init__(train)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, embedding_dim)))
        self.propagate = GraphPropagation(embedding_dim, layers, "lightgcn", normalize=False)
        self.register_buffer("adjacency", user_item_adjacency(train), persistent=False)
        self.reg_weight = reg_weight
        self.bpr = BPRLoss()

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.propagate(torch.cat([self.user_emb, self.item_emb]), self.adjacency)
        return x[: self.num_users], x[self.num_users:]

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self()
        u, p, n = user_all[users], item_all[pos], item_all[neg]
        reg = embedding_norm(self.user_emb[users], self.item_emb[pos], self.item_emb[neg])
        return self.bpr((u * p).sum(1), (u * n).sum(1)) + self.reg_weight * reg
