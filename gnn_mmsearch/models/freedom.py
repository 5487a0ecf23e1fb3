"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", ACM MM 2023).

Two graphs. The item-item graph is built once from the item features and frozen: per modality, each item is linked
to its ``knn_k`` most cosine-similar items, the graph is normalised ``D^-1/2 S D^-1/2``, and the modalities are
summed with weights ``image_weight`` / ``1 - image_weight``; item ID embeddings are propagated over it for
``mm_layers`` layers. The user-item graph is denoised: at every training epoch (:meth:`resample`) a fraction
``1 - dropout`` of its edges is kept, drawn without replacement with probability proportional to
``1 / sqrt(deg(user) * deg(item))`` (edges between high-degree nodes, the likeliest noise, are dropped most), and
the kept graph is renormalised; evaluation uses the whole graph. ID embeddings are propagated over it with
LightGCN (``ui_layers`` layers, outputs averaged). An item's embedding is its LightGCN output plus its item-graph
output; scores are dot products.

Loss: BPR on those embeddings plus ``feature_loss_weight`` times, per modality, BPR between the user embedding and
linear projections of the positive and negative items' features. The features themselves are frozen here (MMRec's
code also trains the raw feature tables).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..layers import GraphPropagation, csr_tensor, knn_graph, spmm
from ..losses import BPRLoss
from ._recommender import RECOMMENDERS, EdgePruning, Recommender, require_item_features, user_item_adjacency


@RECOMMENDERS.register("freedom")
class FREEDOM(Recommender):
    def __init__(self, train: sp.csr_matrix, item_features: dict[str, np.ndarray] | None = None,
                 embedding_dim: int = 64, knn_k: int = 10, image_weight: float = 0.1, mm_layers: int = 1,
                 ui_layers: int = 2, dropout: float = 0.8, feature_loss_weight: float = 1e-4):
        super().__init__(train)
        features = require_item_features("freedom", item_features)
        if knn_k < 1 or mm_layers < 0 or ui_layers < 0:
            raise ValueError(f"recommender freedom: knn_k must be >= 1 and mm_layers, ui_layers >= 0, got "
                             f"{knn_k}, {mm_layers}, {ui_layers}")
        if not 0 <= image_weight <= 1 or not 0 <= dropout < 1:
            raise ValueError(f"recommender freedom: image_weight must be in [0, 1] and dropout in [0, 1), got "
                             f"{image_weight}, {dropout}")
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, embedding_dim)))
        self.modalities = sorted(features)
        for m in self.modalities:
            self.register_buffer(f"{m}_features", torch.from_numpy(features[m]).float(), persistent=False)
        self.projections = nn.ModuleDict({m: nn.Linear(features[m].shape[1], embedding_dim)
                                          for m in self.modalities})
        weights = {"image": image_weight, "text": 1 - image_weight} if len(self.modalities) > 1 else {}
        graph = sum(weights.get(m, 1.0) * _normalized(knn_graph(getattr(self, f"{m}_features"), knn_k))
                    for m in self.modalities)
        self.register_buffer("item_graph", csr_tensor(graph), persistent=False)
        self.register_buffer("item_graph_t", csr_tensor(graph.T), persistent=False)
        self.mm_layers, self.dropout, self.feature_loss_weight = mm_layers, dropout, feature_loss_weight
        self.propagate = GraphPropagation(embedding_dim, ui_layers, "lightgcn", normalize=False)
        self.register_buffer("adjacency", user_item_adjacency(train), persistent=False)
        self.register_buffer("pruned_adjacency", self.adjacency, persistent=False)  # until the first resample
        self.pruning = EdgePruning(train, dropout)
        self.bpr = BPRLoss()

    def resample(self, rng: np.random.Generator) -> None:
        """Degree-sensitive edge pruning: a new sparsified user-item graph for the coming epoch."""
        if self.dropout == 0:
            return
        self.pruned_adjacency = user_item_adjacency(self.pruning.sample(rng)).to(self.adjacency.device)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.propagate(torch.cat([self.user_emb, self.item_emb]),
                           self.pruned_adjacency if self.training else self.adjacency)
        h = self.item_emb
        for _ in range(self.mm_layers):
            h = spmm(self.item_graph, h, self.item_graph_t)
        return x[: self.num_users], x[self.num_users:] + h

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self()
        u = user_all[users]
        loss = self.bpr((u * item_all[pos]).sum(1), (u * item_all[neg]).sum(1))
        items = torch.cat([pos, neg])
        for m in self.modalities:
            p, n = self.projections[m](getattr(self, f"{m}_features")[items]).chunk(2)
            loss = loss + self.feature_loss_weight * self.bpr((u * p).sum(1), (u * n).sum(1))
        return loss


def _normalized(graph: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 S D^-1/2`` with ``D`` the row sums of ``S`` (rows without edges stay empty)."""
    degree = np.asarray(graph.sum(1)).ravel()
    scale = sp.diags(np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1e-12)), 0.0))
    return (scale @ graph @ scale).tocsr()
