"""The diversify stage: maximal marginal relevance (Carbonell & Goldstein, 1998) trades relevance for diversity.

The ranking pipeline applies it to the min-max normalised final score of the candidates, so ``mmr_lambda`` means
the same whatever scored them (the index, rules or a learned ranker).
"""
from __future__ import annotations

import numpy as np


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
