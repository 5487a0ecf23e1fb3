"""Full-ranking top-N evaluation of a recommender, as in MMRec's ``TopKEvaluator``.

Every user with at least one relevant item is ranked against all items; items in ``exclude`` (the user's
training interactions) are never recommended. Recall@K divides the hits by the user's number of relevant items,
NDCG@K uses binary gains and an ideal DCG over ``min(relevant, K)`` items, MAP@K normalises by ``min(relevant, K)``;
every metric is averaged over users (PyG's link-prediction metrics, which follow these definitions).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from .retrieval import RetrievalMetrics

TOPN_METRICS = ("recall", "ndcg", "precision", "map")


@torch.no_grad()
def evaluate_topn(score_users: Callable[[torch.Tensor], torch.Tensor], relevant: sp.csr_matrix,
                  exclude: sp.csr_matrix, ks=(5, 10, 20, 50), batch_size: int = 4096) -> dict[str, float]:
    """``score_users(user_ids) -> [B, num_items]`` scores; ``relevant`` / ``exclude`` are ``users x items``.
    ``batch_size`` users are scored and ranked at a time where the scores are (e.g. the GPU); only their top-K ids
    come back."""
    metrics = RetrievalMetrics(ks, TOPN_METRICS)
    users = np.flatnonzero(np.diff(relevant.indptr))
    k = min(max(ks), relevant.shape[1])
    for start in range(0, users.size, batch_size):
        batch = users[start:start + batch_size]
        scores = score_users(torch.from_numpy(batch)).float()
        seen = exclude[batch].tocoo()
        seen = torch.from_numpy(np.stack([seen.row, seen.col]).astype(np.int64)).to(scores.device)
        scores[seen[0], seen[1]] = float("-inf")
        truth = relevant[batch].tocoo()
        targets = torch.from_numpy(np.stack([truth.row, truth.col])).long()
        metrics.update(scores.topk(k, dim=1).indices.cpu(), targets)
    return metrics.compute()
