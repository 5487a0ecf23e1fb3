"""User vectors from a history of product vectors, and the personalization stage that re-scores candidates.

``user_vector`` methods: ``mean``; ``recency`` (the ``i``-th most recent item weighs ``decay ** i``); ``attention``
(softmax over the history of ``cos(query, item) / temperature``, recency weights when there is no query).
An empty history (a cold user) gives ``None``, and every consumer then falls back to the unpersonalized ranking.
"""
from __future__ import annotations

import numpy as np

METHODS = ("mean", "recency", "attention")


def user_vector(history: np.ndarray, method: str = "attention", query: np.ndarray | None = None,
                decay: float = 0.8, temperature: float = 0.1) -> np.ndarray | None:
    """Unit user vector from ``history`` (``[H, d]`` item vectors, oldest first), or ``None`` for a cold user."""
    if method not in METHODS:
        raise ValueError(f"unknown personalization method {method!r} ({' | '.join(METHODS)})")
    h = np.asarray(history, np.float32).reshape(-1, np.shape(history)[-1] if np.ndim(history) else 0)
    h = h[np.isfinite(h).all(1)] if h.size else h
    if len(h) == 0:
        return None
    recency = decay ** np.arange(len(h) - 1, -1, -1.0)
    if method == "mean":
        w = np.ones(len(h))
    elif method == "recency" or query is None or not np.isfinite(query).all():
        w = recency
    else:
        logits = h @ np.asarray(query, np.float32).reshape(-1) / temperature
        w = np.exp(logits - logits.max())
    v = (w / w.sum()) @ h
    norm = np.linalg.norm(v)
    return (v / norm).astype(np.float32) if norm > 0 else None


def minmax(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to [0, 1] (all equal -> 0.5)."""
    x = np.nan_to_num(np.asarray(x, np.float32), nan=0.0)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    return (x - lo) / (hi - lo) if hi > lo else np.full_like(x, 0.5)


class Personalizer:
    """Re-score: ``minmax(score) + weight * cos(user, candidate)``; a cold user (``user is None``) passes through."""

    def __init__(self, method: str = "attention", weight: float = 0.5, decay: float = 0.8, temperature: float = 0.1):
        if method not in METHODS:
            raise ValueError(f"unknown personalization method {method!r} ({' | '.join(METHODS)})")
        self.method, self.weight, self.decay, self.temperature = method, weight, decay, temperature

    def user(self, history: np.ndarray, query: np.ndarray | None = None) -> np.ndarray | None:
        return user_vector(history, self.method, query, self.decay, self.temperature)

    def __call__(self, scores: np.ndarray, vectors: np.ndarray, user: np.ndarray | None) -> np.ndarray:
        if user is None:
            return np.asarray(scores, np.float32)
        return minmax(scores) + self.weight * np.nan_to_num(vectors @ user)
