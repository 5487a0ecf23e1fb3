"""Base class and registry of the top-N recommenders (users and items embedded in one space, dot-product scores)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .._registry import Registry
from ..data.mmrec import FEATURE_FILES
from ..layers import normalized_adjacency

RECOMMENDERS: Registry[type["Recommender"]] = Registry("recommender")


def create_recommender(name: str, train: sp.csr_matrix, item_features: dict[str, np.ndarray] | None = None,
                       **kwargs) -> "Recommender":
    """Build recommender ``name`` for the ``users x items`` training matrix (and optional item features)."""
    return RECOMMENDERS.create(name, train, item_features=item_features or {}, **kwargs)


def check_option(name: str, value: float, minimum: float, strict: bool = False) -> None:
    """A recommender option below ``minimum`` (or equal to it, with ``strict``) is a one-line ``ValueError``
    naming ``recommender.<name>``."""
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"recommender.{name} must be {'>' if strict else '>='} {minimum}, got {value}")


def user_item_adjacency(train: sp.csr_matrix) -> torch.Tensor:
    """Normalised adjacency of the bipartite user-item graph; nodes are users then items."""
    coo = train.tocoo()
    users = torch.from_numpy(coo.row).long()
    items = torch.from_numpy(coo.col).long() + train.shape[0]
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    return normalized_adjacency(edge_index, sum(train.shape))


class EdgePruning:
    """Keeps ``1 - dropout`` of the training interactions, drawn without replacement either degree-sensitively
    (each with weight ``1 / sqrt(deg(user) deg(item))``, Efraimidis-Spirakis keys: the edges between high-degree
    nodes, the likeliest noise, go most; FREEDOM, LayerGCN) or uniformly."""

    def __init__(self, train: sp.csr_matrix, dropout: float):
        coo = train.tocoo()
        self.users, self.items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        degree = np.bincount(self.users, minlength=train.shape[0])[self.users] * np.bincount(
            self.items, minlength=train.shape[1])[self.items]
        self.weight = 1 / np.sqrt(degree.astype(np.float64))
        self.shape, self.dropout = train.shape, dropout

    def sample(self, rng: np.random.Generator, degree_sensitive: bool = True) -> sp.csr_matrix:
        """The kept interactions as a ``users x items`` matrix."""
        keep = max(1, round(self.weight.size * (1 - self.dropout)))
        if degree_sensitive:  # the largest keys u^(1/w), as logs
            keys = np.log(rng.random(self.weight.size)) / self.weight
            kept = np.argpartition(-keys, keep - 1)[:keep]
        else:
            kept = rng.choice(self.weight.size, keep, replace=False)
        return sp.csr_matrix((np.ones(keep, np.float32), (self.users[kept], self.items[kept])), shape=self.shape)


def require_item_features(name: str, item_features: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """``item_features`` when there are some; else the one-line ``ValueError`` of a multimodal recommender."""
    if not item_features:
        raise ValueError(f"recommender {name} needs item features ({' / '.join(FEATURE_FILES.values())} beside "
                         "the .inter file); none found")
    return item_features


class Recommender(nn.Module):
    """Subclasses implement :meth:`forward` (all user and item embeddings) and :meth:`loss` on a batch of
    ``(user, positive item, sampled negative item)`` triples. Register one with ``@RECOMMENDERS.register(name)``;
    it is built as ``cls(train, item_features=..., **recommender_config)``. Data tensors (the graph adjacency,
    item features) are non-persistent buffers, so ``.to(device)`` moves them and ``state_dict`` leaves them out."""

    def __init__(self, train: sp.csr_matrix):
        super().__init__()
        self.num_users, self.num_items = train.shape

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def resample(self, rng: np.random.Generator) -> None:
        """Called by the trainer at the start of every training epoch (e.g. to draw a new pruned graph, as
        FREEDOM does); ``rng`` is the trainer's, the same on every rank. Default: nothing."""

    @torch.no_grad()
    def scorer(self):
        """``score(user_ids) -> [B, num_items]`` on the model's device, with the embeddings computed once."""
        users, items = self()
        return lambda ids: users[ids.to(users.device)] @ items.t()
