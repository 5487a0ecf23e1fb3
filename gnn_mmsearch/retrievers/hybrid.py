"""The served first stage of text and image queries: the relevance head's index, fused with BM25 (text queries)
and the raw image features (image queries).

    candidates = relevance_index.search(head(query), depth)            # filters and exclusions apply everywhere
               + BM25's top depth                                       # text queries
               + the raw image kNN's top depth                          # image queries
    rrf(d)     = (1 / (k + rank_head(d)) + w_bm25 / (k + rank_bm25(d))) * (k + 1) / (1 + w_bm25)
    score(d)   = rrf(d)                                                 # text queries
               = (minmax(rrf)(d) + w_image * minmax(cos_raw_image)(d)) / (1 + w_image)   # queries with an image
    score(d)  <- (score(d) + w_category * P(type(d) | query text)) / (1 + w_category)    # the query classifier
    score(d)  <- (score(d) + w_match * match(query text, d)) / (1 + w_match)              # term match

so a product first for every ranking scores 1. BM25 brings exact terms (a brand, a model name, a typo-free noun),
with a title boost the products whose title names them, and, with expansion (``expansion.py``), the words a
product's image shows that its text lacks, at their own weight;
the raw EfficientNet cosine keeps near-copies of a query photo on top (joined by score, not rank, so a near-copy's
margin survives); the head brings synonyms, images for words and products without text; the query classifier
keeps the named product type on top ("striped watch": watches before striped watch bands); the term match
(``term_match.py``) favours products that match every word a query names. Product and history
queries do not come here: they search the graph encoder's index (what is bought together).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._topk import top_k_indices
from ..index import Filter, SearchResult, VectorIndex
from ..models.relevance import RelevanceEncoder
from ._retriever import QueryBatch
from .bm25 import BM25Retriever
from .fusion import ranks, reciprocal_rank_fusion
from .term_match import TermMatch


def _bm25_weight(name: str, doc: str) -> property:
    """A weight of the hybrid's BM25, read and set through the hybrid (so fusion weights are chosen alike)."""
    def get(self) -> float:
        return getattr(self.bm25, name) if self.bm25 is not None else 0.0

    def set(self, weight: float) -> None:
        if self.bm25 is not None:
            setattr(self.bm25, name, weight)

    return property(get, set, doc=doc)


class HybridRetrieval:
    def __init__(self, head: RelevanceEncoder, index: VectorIndex, rows: Mapping[str, int],
                 bm25: BM25Retriever | None = None, images: tuple[np.ndarray, np.ndarray] | None = None,
                 depth: int = 100, bm25_weight: float = 1.0, image_weight: float = 1.0, k: float = 60.0,
                 types: np.ndarray | None = None, category_weight: float = 0.0, terms: TermMatch | None = None,
                 match_weight: float = 0.0):
        """``rows``: product id -> catalog row; ``images``: the products' raw image features (unit rows, any float
        dtype) and their presence mask, in catalog order; ``types``: each product's index in the head's
        ``config.categories`` (-1: none), in catalog order; ``terms``: the products' term match."""
        self.head, self.index, self.rows, self.bm25, self.images = head, index, rows, bm25, images
        self.index_ids = [None] * len(rows)
        for pid, row in rows.items():
            self.index_ids[row] = pid
        self.depth, self.bm25_weight, self.image_weight, self.k = depth, bm25_weight, image_weight, k
        self.types, self.category_weight = types, category_weight
        self.terms, self.match_weight = terms, match_weight

    title_weight = _bm25_weight("title_weight", "BM25's title boost (0 without BM25).")
    expansion_weight = _bm25_weight("expansion_weight", "BM25's weight of the words expansion added to product "
                                                        "documents (0 without BM25).")

    @torch.no_grad()
    def search(self, features: Mapping[str, torch.Tensor], texts: Sequence[str] | None, k: int,
               filter: Filter | None = None, exclude: Sequence[Sequence[str]] | None = None) -> SearchResult:
        """Top ``max(k, depth)`` per query, best first; ``texts`` (one per query, or ``None``) turn on BM25's
        candidates and score, image features the raw image candidates and score."""
        vectors = self.head.embed_query_features(**features).numpy()
        depth = max(k, self.depth)
        found = self.index.search(vectors, depth, filter=filter, exclude=exclude)
        lexical = None
        if texts is not None and self.bm25 is not None and self.bm25_weight:
            lexical = self.bm25.scores(QueryBatch(list(texts)))
        image = None
        if "image" in features and self.images is not None and self.image_weight:
            image = self._image_scores(F.normalize(features["image"].float(), dim=-1).numpy())
        category = None
        if "text" in features and self.types is not None and self.head.classifier is not None and self.category_weight:
            category = torch.softmax(self.head.category_logits(features["text"]), dim=-1).numpy()
            category = np.concatenate([category, np.zeros((len(category), 1), category.dtype)], axis=1)  # type -1
        match = texts is not None and self.terms is not None and self.match_weight > 0
        if lexical is None and image is None and category is None and not match:
            return found
        ids, scores = [], []
        for q, head_ids in enumerate(found.ids):
            candidates = list(head_ids)
            pools = [np.where(lexical[q] > 0, lexical[q], -np.inf)] if lexical is not None else []  # a term matched
            pools += [image[q]] if image is not None else []
            for pool in pools:
                candidates += self._candidates(pool, set(candidates), depth, filter,
                                               exclude[q] if exclude is not None else ())
            rows = np.array([self.rows[i] for i in candidates], np.int64)
            head = self.index.vectors(candidates) @ vectors[q]
            rank_lists, weights = [ranks(head[None])[0]], [1.0]
            if lexical is not None:
                rank_lists.append(ranks(lexical[q, rows][None])[0])
                weights.append(self.bm25_weight)
            fused = reciprocal_rank_fusion(rank_lists, weights, self.k) * (self.k + 1) / sum(weights)
            if image is not None:
                fused = (_minmax(fused) + self.image_weight * _minmax(image[q, rows])) / (1 + self.image_weight)
            if category is not None:
                fused = (fused + self.category_weight * category[q, self.types[rows]]) / (1 + self.category_weight)
            if match:
                fused = (fused + self.match_weight * self.terms.scores(texts[q], rows)) / (1 + self.match_weight)
            order = np.argsort(-fused, kind="stable")[:depth]
            ids.append([candidates[i] for i in order])
            scores.append(fused[order].astype(np.float32))
        return SearchResult(ids, scores)

    def _image_scores(self, queries: np.ndarray) -> np.ndarray:
        """Raw image cosine ``[Q, N]`` of every product (``-inf`` without an image)."""
        items, ok = self.images
        return np.where(ok[None], queries @ np.asarray(items, np.float32).T, -np.inf)

    def _candidates(self, scores: np.ndarray, seen: set[str], depth: int, filter: Filter | None,
                    exclude: Sequence[str]) -> list[str]:
        """The top ``depth`` of catalog-order ``scores`` (BM25 or the raw image cosine; filter and exclusions
        applied, ``-inf``: never) not in ``seen``."""
        order = top_k_indices(torch.from_numpy(scores[None]), depth + len(exclude))[0].numpy()  # not a full sort
        ids = [self.index_ids[r] for r in order if np.isfinite(scores[r])]
        ids = [i for i in ids if i in self.index and i not in exclude][:depth]
        if filter is not None and not filter.is_empty:
            ids = [i for i, ok in zip(ids, self.index.admits(ids, filter)) if ok]
        return [i for i in ids if i not in seen]


def _minmax(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to ``[0, 1]`` (a constant to 1); ``-inf`` (no score) to 0."""
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros_like(x, dtype=np.float64)
    lo, hi = x[finite].min(), x[finite].max()
    return np.where(finite, (x - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
