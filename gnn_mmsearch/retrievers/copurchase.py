"""Product queries ("bought together"): the graph encoder's similarity plus the co-purchase graph's own signals,

    score(i, j) = <g_i, g_j> + adjacency_weight * (D^-1/2 A D^-1/2)^2_ij + popularity_weight * pop_j

with ``(D^-1/2 A D^-1/2)^2`` the degree-normalised common-neighbour count and ``pop_j = log(1 + deg_j)`` scaled to
``[0, 1]``, both over the links visible at that point (a stage's message-passing graph offline, every link served).
The weights are chosen on the validation links (:func:`choose_weights`). Served (:class:`CopurchaseRetrieval`), the
graph index's top ``depth``, the query's two-hop neighbours and the ``depth`` most popular products are re-scored
exactly. The two graph signals alone are baselines (``popularity``, ``common_neighbours``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from ..data.catalog import Catalog
from ..features import ProductFeatures
from ..index import Filter, SearchResult, VectorIndex
from ._retriever import RETRIEVERS, QueryBatch, Retriever

ProductScores = Callable[[torch.Tensor, "CopurchaseGraph"], torch.Tensor]  # (query rows, visible graph) -> [Q, N]


class CopurchaseGraph:
    """An undirected co-purchase graph's normalised adjacency and popularity (``edge_index``: ``[2, E]`` rows)."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int):
        src, dst = np.asarray(edge_index, np.int64).reshape(2, -1)
        a = sp.coo_matrix((np.ones(2 * len(src), np.float32), (np.r_[src, dst], np.r_[dst, src])),
                          shape=(num_nodes, num_nodes)).tocsr()
        a.data[:] = 1.0  # repeated links count once
        degree = np.asarray(a.sum(1)).ravel()
        scale = sp.diags((1.0 / np.sqrt(np.maximum(degree, 1))).astype(np.float32))
        self.adjacency = (scale @ a @ scale).tocsr()
        pop = np.log1p(degree).astype(np.float32)
        self.popularity = pop / max(float(pop.max(initial=0.0)), 1e-9)
        self.num_nodes = num_nodes

    def common_neighbours(self, rows: Sequence[int]) -> sp.csr_matrix:
        """``(D^-1/2 A D^-1/2)^2`` rows of ``rows``: sparse ``[Q, N]``, non-zero on two-hop neighbours."""
        return (self.adjacency[np.asarray(rows, np.int64)] @ self.adjacency).tocsr()

    def most_popular(self, n: int) -> np.ndarray:
        return np.argsort(-self.popularity, kind="stable")[:n]


@dataclass(frozen=True)
class CopurchaseWeights:
    adjacency: float = 0.0
    popularity: float = 0.0

    def scores(self, emb: torch.Tensor | None) -> ProductScores:
        """The product-query scores ``(rows, graph) -> [Q, N]`` over embeddings ``emb`` (``None``: graph only)."""
        def score(rows: torch.Tensor, graph: CopurchaseGraph) -> torch.Tensor:
            out = emb[rows] @ emb.t() if emb is not None else torch.zeros(len(rows), graph.num_nodes)
            if self.adjacency:
                out = out + self.adjacency * torch.from_numpy(graph.common_neighbours(rows.numpy()).toarray())
            if self.popularity:
                out = out + self.popularity * torch.from_numpy(graph.popularity)[None]
            return out
        return score


def choose_weights(evaluate: Callable[[ProductScores], dict[str, float]], emb: torch.Tensor,
                   adjacency: Sequence[float], popularity: Sequence[float], metric: str = "recall"
                   ) -> tuple[CopurchaseWeights, dict[str, float]]:
    """The grid point with the best mean of ``metric`` at 10 and 20 in ``evaluate``'s validation metrics (ties: the
    smaller weights) and those metrics. Twice the ranks of ``@10`` alone: a few hundred validation products make
    ``@10`` alone noisy enough that two encoders of one seed, equal on it, chose adjacency 1 and 16."""
    best, best_metrics = CopurchaseWeights(), {}
    for a, p in sorted(itertools.product(adjacency, popularity), key=sum):
        weights = CopurchaseWeights(a, p)
        scored = evaluate(weights.scores(emb))
        if not best_metrics or selection_value(scored, metric) > selection_value(best_metrics, metric):
            best, best_metrics = weights, scored
    return best, best_metrics


def selection_value(metrics: dict[str, float], metric: str = "recall") -> float:
    """What :func:`choose_weights` maximises: the mean of ``metric@10`` and ``metric@20``."""
    return (metrics[f"{metric}@10"] + metrics[f"{metric}@20"]) / 2


class CopurchaseRetrieval:
    """Serves product queries: the graph ``index``'s top ``depth``, the two-hop neighbours and the ``depth`` most
    popular products, re-scored by ``weights`` over ``graph`` (every link); ``rows``: product id -> catalog row."""

    def __init__(self, index: VectorIndex, graph: CopurchaseGraph, rows: Mapping[str, int], ids: Sequence[str],
                 weights: CopurchaseWeights, depth: int = 100):
        self.index, self.graph, self.rows, self.ids, self.weights, self.depth = index, graph, rows, ids, weights, depth

    def search(self, products: Sequence[str], k: int, filter: Filter | None = None,
               exclude: Sequence[Sequence[str]] | None = None) -> SearchResult:
        """Top ``k`` per product id, best first (``exclude[i]``: ids never returned for query ``i``)."""
        vectors = self.index.vectors(products)
        found = self.index.search(vectors, max(k, self.depth), filter=filter, exclude=exclude)
        popular = [self.ids[r] for r in self.graph.most_popular(self.depth)]
        ids, scores = [], []
        for q, product in enumerate(products):
            two_hop = self.graph.common_neighbours([self.rows[product]])
            extra = [self.ids[r] for r in two_hop.indices] + popular
            skip = {product, *found.ids[q], *(exclude[q] if exclude is not None else ())}
            extra = [i for i in dict.fromkeys(extra) if i not in skip and i in self.index]
            if extra and filter is not None and not filter.is_empty:
                extra = [i for i, ok in zip(extra, self.index.admits(extra, filter)) if ok]
            candidates = [*found.ids[q], *extra]
            rows = np.array([self.rows[i] for i in candidates], np.int64)
            score = self.index.vectors(candidates) @ vectors[q]
            score += self.weights.adjacency * two_hop[0, rows].toarray().ravel()
            score += self.weights.popularity * self.graph.popularity[rows]
            order = np.argsort(-score, kind="stable")[:k]
            ids.append([candidates[i] for i in order])
            scores.append(score[order].astype(np.float32))
        return SearchResult(ids, scores)


class _GraphBaseline(Retriever):
    """A co-purchase graph signal alone: answers product queries only."""

    weights: CopurchaseWeights

    def fit(self, catalog: Catalog, features: ProductFeatures) -> "_GraphBaseline":
        return self

    def supports(self, queries: QueryBatch) -> bool:
        return False

    def product_scores(self) -> ProductScores:
        return self.weights.scores(None)


@RETRIEVERS.register("popularity")
class PopularityBaseline(_GraphBaseline):
    """The products with the most co-purchase links, the same for every query."""

    weights = CopurchaseWeights(popularity=1.0)


@RETRIEVERS.register("common_neighbours")
class CommonNeighboursBaseline(_GraphBaseline):
    """Degree-normalised common neighbours on the co-purchase graph (a classic link predictor)."""

    weights = CopurchaseWeights(adjacency=1.0)
