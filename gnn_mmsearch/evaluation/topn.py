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
def rank_topn(score_users: Callable[[torch.Tensor], torch.Tensor], relevant: sp.csr_matrix, exclude: sp.csr_matrix,
              k: int, batch_size: int = 4096) -> tuple[np.ndarray, torch.Tensor]:
    """The users with a relevant item and their top-``k`` item ids ``[U, k]``, items in ``exclude`` left out.
    ``score_users(user_ids) -> [B, num_items]``; ``batch_size`` users are scored and ranked at a time where the
    scores are (e.g. the GPU); only their top-K ids come back."""
    users = np.flatnonzero(np.diff(relevant.indptr))
    k, top = min(k, relevant.shape[1]), []
    for start in range(0, users.size, batch_size):
        batch = users[start:start + batch_size]
        scores = score_users(torch.from_numpy(batch)).float()
        seen = exclude[batch].tocoo()
        seen = torch.from_numpy(np.stack([seen.row, seen.col]).astype(np.int64)).to(scores.device)
        scores[seen[0], seen[1]] = float("-inf")
        top.append(scores.topk(k, dim=1).indices.cpu())
    return users, torch.cat(top) if top else torch.empty(0, k, dtype=torch.long)


def evaluate_topn(score_users: Callable[[torch.Tensor], torch.Tensor], relevant: sp.csr_matrix,
                  exclude: sp.csr_matrix, ks=(5, 10, 20, 50), batch_size: int = 4096) -> dict[str, float]:
    """Mean Recall / NDCG / Precision / MAP at ``ks`` over the users of ``relevant`` (see :func:`rank_topn`)."""
    users, top = rank_topn(score_users, relevant, exclude, max(ks), batch_size)
    return topn_metrics(users, top, relevant, ks)


def topn_metrics(users: np.ndarray, top: torch.Tensor, relevant: sp.csr_matrix, ks) -> dict[str, float]:
    """Mean metrics of the ranked lists ``top`` of ``users`` (from :func:`rank_topn`)."""
    metrics = RetrievalMetrics(ks, TOPN_METRICS)
    truth = relevant[users].tocoo()
    metrics.update(top, torch.from_numpy(np.stack([truth.row, truth.col])).long())
    return metrics.compute()


def per_user_topn(users: np.ndarray, top: torch.Tensor, relevant: sp.csr_matrix, ks) -> dict[str, np.ndarray]:
    """Recall@K and NDCG@K of every user (``[U]`` arrays, same definitions as :func:`topn_metrics`), for paired
    significance tests between two models ranked on the same users."""
    truth = relevant[users].tocsr()
    n = relevant.shape[1]
    known = np.sort(np.repeat(np.arange(users.size, dtype=np.int64), np.diff(truth.indptr)) * n + truth.indices)
    keys = np.arange(users.size, dtype=np.int64)[:, None] * n + top.numpy()
    rel = known[np.searchsorted(known, keys).clip(max=max(known.size - 1, 0))] == keys
    count = np.diff(truth.indptr)
    discount = 1.0 / np.log2(np.arange(2, rel.shape[1] + 2))
    out = {}
    for k in ks:
        hits = rel[:, :k]
        out[f"recall@{k}"] = hits.sum(1) / count
        ideal = np.cumsum(discount[:k])[np.minimum(count, k) - 1]
        out[f"ndcg@{k}"] = (hits * discount[:k]).sum(1) / ideal
    return out
