"""LayerGCN (Zhou et al., ICDE 2023): a layer-refined GCN over the user-item graph, trained on a pruned graph.

Each layer propagates the previous layer's output over the normalised graph (LightGCN's neighbour sum) and scales
every node's result by its cosine similarity with the node's layer-0 (ego) embedding, so propagation that drifts
from a node's own embedding counts less; the final embedding sums the refined outputs of layers 1..L. Before each
training epoch a share ``dropout`` of the training edges is dropped and the rest renormalised. Degree-sensitive
pruning keeps an edge ``(u, i)`` with probability proportional to ``1 / sqrt(d_u d_i)``, so edges of high-degree
nodes go first; as in the authors' code (enoche/MMRec), epochs alternate it with uniform pruning. Scores use the
full graph. Loss: BPR + ``reg_weight`` * half the squared norms of the batch's layer-0 embeddings (MMRec's
``L2Loss``), both per interaction.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..layers import CONVS
from ..losses import BPRLoss, squared_norm
from ._recommender import RECOMMENDERS, EdgePruning, Recommender, check_option, user_item_adjacency


@RECOMMENDERS.register("layergcn")
class LayerGCN(Recommender):
    def __init__(self, train: sp.csr_matrix, item_features=None, embedding_dim: int = 64, layers: int = 4,
                 dropout: float = 0.1, reg_weight: float = 1e-4):
        super().__init__(train)
        check_option("embedding_dim", embedding_dim, 1)
        check_option("layers", layers, 1)
        check_option("reg_weight", reg_weight, 0)
        if not 0 <= dropout < 1:
            raise ValueError(f"recommender.dropout must be in [0, 1), got {dropout}")
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, embedding_dim)))
        self.conv = CONVS.create("lightgcn", embedding_dim, normalize=False)
        self.register_buffer("adjacency", user_item_adjacency(train), persistent=False)
        self.register_buffer("train_adjacency", None, persistent=False)  # the pruned graph; None: the full one
        self.pruning = EdgePruning(train, dropout)
        self.degree_sensitive = True  # this epoch's pruning; alternates
        self.layers, self.dropout, self.reg_weight = layers, dropout, reg_weight
        self.bpr = BPRLoss()

    def resample(self, rng: np.random.Generator) -> None:
        """Draw this epoch's training graph: ``1 - dropout`` of the edges, degree-sensitive or uniform in turn."""
        if self.dropout == 0:
            return
        pruned = self.pruning.sample(rng, self.degree_sensitive)
        self.degree_sensitive = not self.degree_sensitive
        self.train_adjacency = user_item_adjacency(pruned).to(self.adjacency.device)

    def propagate(self, adjacency: torch.Tensor) -> torch.Tensor:
        ego = torch.cat([self.user_emb, self.item_emb])
        x, total = ego, torch.zeros_like(ego)
        for _ in range(self.layers):
            x = self.conv(x, adjacency)
            x = x * F.cosine_similarity(x, ego, dim=1).unsqueeze(1)
            total = total + x
        return total

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.propagate(self.adjacency)
        return x[: self.num_users], x[self.num_users:]

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        x = self.propagate(self.adjacency if self.train_adjacency is None else self.train_adjacency)
        u, p, n = x[users], x[self.num_users + pos], x[self.num_users + neg]
        reg = squared_norm(self.user_emb[users], self.item_emb[pos], self.item_emb[neg])
        return self.bpr((u * p).sum(1), (u * n).sum(1)) + self.reg_weight * reg
