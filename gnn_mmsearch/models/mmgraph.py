"""The framework's own recommender: the product encoder's recipe applied to users and items.

Items start from an ID embedding, fused (``layers/fusion.py``) with projections of their image / text features
when the dataset has them; users from an ID embedding. Both are propagated over the user-item training graph
with LightGCN propagation (layer outputs averaged), L2-normalised, and trained with the InfoNCE loss of the
product encoder at temperature ``temperature``: each user's positive item against the batch's sampled negatives
(uniform over items the user has not interacted with) and, with ``in_batch_negatives``, the batch's other
positives. Scores are cosine similarities. With no item features it is ID-only.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..layers import FUSIONS, GraphPropagation
from ..losses import InfoNCELoss
from ._recommender import RECOMMENDERS, Recommender, user_item_adjacency


@RECOMMENDERS.register("mmgraph")
class MultimodalGraphRecommender(Recommender):
    def __init__(self, train: sp.csr_matrix, item_features: dict[str, np.ndarray] | None = None,
                 embedding_dim: int = 64, layers: int = 2, temperature: float = 0.2,
                 in_batch_negatives: bool = False, fusion: str = "weighted", cl_weight: float = 0.0,
                 noise_eps: float = 0.1, cl_temperature: float = 0.2, cl_layer: int = 1, reg_weight: float = 0.0):
        super().__init__(train)
        self.cl_weight, self.noise_eps, self.cl_layer, self.reg_weight = cl_weight, noise_eps, cl_layer, reg_weight
        self.cl = InfoNCELoss(cl_temperature, symmetric=False, in_batch=True)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, embedding_dim)))
        features = item_features or {}
        self.modalities = sorted(features)
        for m in self.modalities:
            feats = torch.from_numpy(features[m]).float()
            self.register_buffer(f"{m}_features", feats, persistent=False)  # reloaded with the data, not saved
            self.register_buffer(f"{m}_mask", feats.abs().sum(1) > 0, persistent=False)
        self.projections = nn.ModuleDict({m: nn.Linear(features[m].shape[1], embedding_dim)
                                          for m in self.modalities})
        self.fusion = FUSIONS.create(fusion, 1 + len(self.modalities), embedding_dim) if self.modalities else None
        self.propagate = GraphPropagation(embedding_dim, layers, "lightgcn", normalize=False)
        self.register_buffer("adjacency", user_item_adjacency(train), persistent=False)
        self.infonce = InfoNCELoss(temperature, symmetric=False, in_batch=in_batch_negatives)

    def item_inputs(self) -> torch.Tensor:
        """Layer-0 item vectors: the ID embedding, fused with the projected features when there are some."""
        if self.fusion is None:
            return self.item_emb
        tokens = [self.item_emb] + [self.projections[m](getattr(self, f"{m}_features")) for m in self.modalities]
        masks = [torch.ones_like(self.item_emb[:, 0], dtype=torch.bool)]
        masks += [getattr(self, f"{m}_mask") for m in self.modalities]
        return self.fusion(torch.stack(tokens, 1), torch.stack(masks, 1))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.propagate(torch.cat([self.user_emb, self.item_inputs()]), self.adjacency)
        x = F.normalize(x, dim=1)
        return x[: self.num_users], x[self.num_users:]

    def _noisy(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user_emb, self.item_inputs()])
        outs = [x]
        for conv in self.propagate.convs:
            h = conv(outs[-1], self.adjacency)
            outs.append(h + torch.sign(h) * F.normalize(torch.rand_like(h), dim=1) * self.noise_eps)
        return F.normalize(torch.stack(outs).mean(0), dim=1), F.normalize(outs[self.cl_layer], dim=1)

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        if not self.cl_weight:
            user_all, item_all = self()
            loss = self.infonce(user_all[users], item_all[pos], item_all[neg])
        else:
            x, view = self._noisy()
            n = self.num_users
            loss = self.infonce(x[users], x[n + pos], x[n + neg])
            u, i = users.unique(), pos.unique() + n
            loss = loss + self.cl_weight * (self.cl(x[u], view[u]) + self.cl(x[i], view[i]))
        if self.reg_weight:
            loss = loss + self.reg_weight * (self.user_emb[users].pow(2).sum() + self.item_emb[pos].pow(2).sum()
                                             + self.item_emb[neg].pow(2).sum()) / users.numel()
        return loss
