"""Hybrid retrieval: reciprocal rank fusion (Cormack et al., 2009) of several retrievers' rankings."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..data.catalog import Catalog
from ..features import ProductFeatures
from ._retriever import RETRIEVERS, QueryBatch, Retriever


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every product per query (ties by product order); ``-inf`` products rank ``inf``."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = np.empty(scores.shape, dtype=np.float64)
    np.put_along_axis(out, order, np.broadcast_to(np.arange(1, scores.shape[1] + 1, dtype=np.float64), scores.shape), 1)
    out[~np.isfinite(scores)] = np.inf
    return out


def reciprocal_rank_fusion(rank_lists: Sequence[np.ndarray], weights: Sequence[float], k: float = 60.0) -> np.ndarray:
    """``sum_r w_r / (k + rank_r)`` over aligned rank arrays (an ``inf`` rank contributes nothing)."""
    return sum(w / (k + r) for w, r in zip(weights, rank_lists))


@RETRIEVERS.register("rrf")
class RRFRetriever(Retriever):
    """``sum_r w_r / (k + rank_r(product))`` over ``retrievers`` (each ``{name: <registered retriever>, **options}``;
    default BM25 and raw text kNN); a product a retriever cannot see gets nothing from it."""

    def __init__(self, retrievers: Sequence[Mapping] | None = None, weights: Sequence[float] | None = None,
                 k: float = 60.0):
        retrievers = retrievers or [{"name": "bm25"}, {"name": "raw", "modalities": ["text"]}]
        self.parts = [RETRIEVERS.create(r["name"], **{key: value for key, value in r.items() if key != "name"})
                      for r in retrievers]
        self.weights = list(weights) if weights is not None else [1.0] * len(self.parts)
        if len(self.weights) != len(self.parts):
            raise ValueError(f"{len(self.parts)} retrievers but {len(self.weights)} weights")
        self.k = k

    def fit(self, catalog: Catalog, features: ProductFeatures) -> "RRFRetriever":
        for part in self.parts:
            part.fit(catalog, features)
        return self

    def supports(self, queries: QueryBatch) -> bool:
        return all(part.supports(queries) for part in self.parts)

    def scores(self, queries: QueryBatch) -> np.ndarray:
        fused = reciprocal_rank_fusion([ranks(part.scores(queries)) for part in self.parts], self.weights, self.k)
        out = np.asarray(fused, np.float32)
        out[out == 0] = -np.inf  # seen by no retriever
        return out
