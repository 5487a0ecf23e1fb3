"""LGMRec (Guo et al., "LGMRec: Local and Global Graph Learning for Multimodal Recommendation", AAAI 2024).

Local graph embedding: collaborative embeddings are ID embeddings propagated over the user-item graph with LightGCN
(``ui_layers`` layers, outputs averaged); per modality, items start from a linear projection of their features,
users from the mean over their training items, and both are propagated over the same graph for ``mm_layers``
layers (last output kept). The local embedding is the collaborative one plus each modality's, L2-normalised.

Global hypergraph embedding: per modality, items are attached to ``hyperedges`` learnt hyperedges by
``softmax(features @ V / temperature)``, users by the softmax of the sum of their items' scores (Gumbel-softmax
while training, with dropout keeping ``keep_rate`` of the entries). ``hyper_layers`` rounds of item -> hyperedge -> item
message passing on the collaborative item embeddings give the items' and users' hypergraph embeddings; summed over
the modalities and L2-normalised they are added to the local embedding with weight ``alpha``. Scores are dot
products.

Loss: BPR, plus ``cl_weight`` times the hypergraph contrastive loss (each batch user's, and each positive item's,
hypergraph embedding of one modality is matched to its embedding of the other modality among all users', resp.
items', at ``temperature``; summed over the batch, as in the authors' code), plus ``reg_weight`` times the norm of
the batch's final embeddings.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..layers import GraphPropagation, csr_tensor, spmm
from ..losses import BPRLoss, embedding_norm
from ._recommender import RECOMMENDERS, Recommender, require_item_features, user_item_adjacency


@RECOMMENDERS.register("lgmrec")
class LGMRec(Recommender):
    def __init__(self, train: sp.csr_matrix, item_features: dict[str, np.ndarray] | None = None,
                 embedding_dim: int = 64, ui_layers: int = 2, mm_layers: int = 2, hyper_layers: int = 1,
                 hyperedges: int = 4, keep_rate: float = 0.5, alpha: float = 0.3, temperature: float = 0.2,
                 cl_weight: float = 1e-4, reg_weight: float = 1e-6):
        super().__init__(train)
        features = require_item_features("lgmrec", item_features)
        if min(ui_layers, mm_layers) < 0 or min(hyper_layers, hyperedges) < 1:
            raise ValueError(f"recommender lgmrec: ui_layers, mm_layers must be >= 0 and hyper_layers, hyperedges "
                             f">= 1, got {ui_layers}, {mm_layers}, {hyper_layers}, {hyperedges}")
        if not 0 < keep_rate <= 1 or temperature <= 0:
            raise ValueError(f"recommender lgmrec: keep_rate must be in (0, 1] and temperature > 0, got {keep_rate}, "
                             f"{temperature}")
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, embedding_dim)))
        self.modalities = sorted(features)
        for m in self.modalities:
            self.register_buffer(f"{m}_features", torch.from_numpy(features[m]).float(), persistent=False)
        self.projections = nn.ModuleDict({m: _linear(features[m].shape[1], embedding_dim) for m in self.modalities})
        self.hyper = nn.ModuleDict({m: _linear(features[m].shape[1], hyperedges) for m in self.modalities})
        self.propagate = GraphPropagation(embedding_dim, ui_layers, "lightgcn", normalize=False)
        self.register_buffer("adjacency", user_item_adjacency(train), persistent=False)
        self.register_buffer("interactions", csr_tensor(train), persistent=False)
        self.register_buffer("interactions_t", csr_tensor(train.T), persistent=False)
        degree = np.asarray(train.sum(1), np.float32)
        self.register_buffer("inverse_degree", torch.from_numpy(1 / np.maximum(degree, 1)), persistent=False)
        self.mm_layers, self.hyper_layers = mm_layers, hyper_layers
        self.alpha, self.temperature, self.cl_weight, self.reg_weight = alpha, temperature, cl_weight, reg_weight
        self.drop = nn.Dropout(1 - keep_rate)
        self.bpr = BPRLoss()

    def embed(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Final user and item embeddings, and per modality the (users, items) hypergraph embeddings."""
        collaborative = self.propagate(torch.cat([self.user_emb, self.item_emb]), self.adjacency)
        items_cf = collaborative[self.num_users:]
        local, hyper = collaborative, {}
        for m in self.modalities:
            features = getattr(self, f"{m}_features")
            item_x = self.projections[m](features)
            x = torch.cat([self.user_mean(item_x), item_x])
            for _ in range(self.mm_layers):
                x = spmm(self.adjacency, x)
            local = local + F.normalize(x)
            item_scores = self.hyper[m](features)
            user_h, item_h = (self.drop(self.attach(s)) for s in (self.user_sum(item_scores), item_scores))
            hyper[m] = self.hypergraph(user_h, item_h, items_cf)
        out = local + self.alpha * F.normalize(sum(torch.cat(pair) for pair in hyper.values()))
        return out[: self.num_users], out[self.num_users:], hyper

    def user_mean(self, item_x: torch.Tensor) -> torch.Tensor:
        return self.user_sum(item_x) * self.inverse_degree

    def user_sum(self, item_x: torch.Tensor) -> torch.Tensor:
        return spmm(self.interactions, item_x, self.interactions_t)

    def attach(self, logits: torch.Tensor) -> torch.Tensor:
        """Soft hyperedge memberships: Gumbel-softmax while training, its noise-free softmax otherwise."""
        if self.training:
            return F.gumbel_softmax(logits, tau=self.temperature, hard=False, dim=1)
        return torch.softmax(logits / self.temperature, dim=1)

    def hypergraph(self, user_h: torch.Tensor, item_h: torch.Tensor, items: torch.Tensor):
        """``hyper_layers`` rounds item -> hyperedge -> item; users read the last hyperedge embeddings."""
        for _ in range(self.hyper_layers):
            edges = item_h.t() @ items
            items = item_h @ edges
        return user_h @ edges, items

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items, _ = self.embed()
        return users, items

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        user_all, item_all, hyper = self.embed()
        u, p, n = user_all[users], item_all[pos], item_all[neg]
        loss = self.bpr((u * p).sum(1), (u * n).sum(1)) + self.reg_weight * embedding_norm(u, p, n)
        for a, b in combinations(self.modalities, 2):
            for side, ids in ((0, users), (1, pos)):
                loss = loss + self.cl_weight * self.contrast(hyper[a][side][ids], hyper[b][side], ids)
        return loss

    def contrast(self, anchor: torch.Tensor, candidates: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``-sum log softmax``: each anchor's own row of ``candidates`` among all of them (cosine / temperature)."""
        logits = (F.normalize(anchor) / self.temperature) @ F.normalize(candidates).t()  # scale the small side
        return F.cross_entropy(logits, ids, reduction="sum")


def _linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A bias-free projection, Xavier-initialised as in the authors' code."""
    layer = nn.Linear(in_dim, out_dim, bias=False)
    nn.init.xavier_uniform_(layer.weight)
    return layer
