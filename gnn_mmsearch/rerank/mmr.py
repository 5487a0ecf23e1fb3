"""Maximal marginal relevance (Carbonell & Goldstein, 1998): trade relevance for diversity when picking results."""
from __future__ import annotations

import numpy as np

from ..index.base import SearchResult, VectorIndex


def mmr(relevance: np.ndarray, candidates: np.ndarray, k: int, lambda_: float = 0.5) -> np.ndarray:
    """Greedily pick ``argmax lambda_ * rel[i] - (1 - lambda_) * max_{j picked} cos(c_i, c_j)``.

    Args:
        relevance: ``[C]`` relevance of each candidate (e.g. its cosine score to the query).
        candidates: ``[C, d]`` unit vectors of the candidates.
        k: number to pick; ``min(k, C)`` distinct indices come back.
        lambda_: 1 gives the relevance order, 0 pure diversity (after the most relevant first pick).

    Returns:
        ``int64`` indices into the candidates, in pick order.
    """
    rel = np.asarray(relevance, np.float32).reshape(-1)
    cand = np.asarray(candidates, np.float32)
    if cand.ndim != 2 or len(cand) != len(rel):
        raise ValueError(f"candidates must be [{len(rel)}, d], got {list(cand.shape)}")
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be in [0, 1], got {lambda_}")
    k = min(k, len(rel))
    picked = np.empty(k, np.int64)
    if k == 0:
        return picked
    gain = lambda_ * rel  # -inf once picked
    first = int(np.argmax(rel))
    picked[0], gain[first] = first, -np.inf
    max_sim = cand @ cand[first]  # running max similarity to the picked set
    for step in range(1, k):
        j = int(np.argmax(gain - (1.0 - lambda_) * max_sim))
        picked[step], gain[j] = j, -np.inf
        np.maximum(max_sim, cand @ cand[j], out=max_sim)
    return picked


class MMRReranker:
    """Re-rank candidates with :func:`mmr`; ``rerank`` applies it to a :class:`SearchResult`."""

    def __init__(self, lambda_: float = 0.5, k: int = 10):
        self.lambda_, self.k = lambda_, k

    def __call__(self, relevance: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return mmr(relevance, candidates, self.k, self.lambda_)

    def rerank(self, result: SearchResult, index: VectorIndex) -> SearchResult:
        """Pick ``k`` of each query's results, using their cosine scores as relevance and the index's vectors."""
        ids, scores = [], []
        for row_ids, row_scores in zip(result.ids, result.scores):
            order = self(row_scores, index.vectors(row_ids))
            ids.append([row_ids[i] for i in order])
            scores.append(row_scores[order])
        return SearchResult(ids, scores)

    def __repr__(self) -> str:
        return f"MMRReranker(lambda_={self.lambda_}, k={self.k})"
