"""The served first stage of text and image queries: the relevance head's index, its candidates re-scored by a
reciprocal rank fusion with BM25 (text queries) and with the raw image features (image queries).

    candidates = relevance_index.search(head(query), depth)           # filters and exclusions apply here
    score(d)   = (1 / (k + rank_head(d)) + sum_r w_r / (k + rank_r(d))) * (k + 1) / (1 + sum_r w_r)

so a product first for every ranking scores 1. BM25 brings exact terms (a brand, a model name, a typo-free noun);
the raw EfficientNet cosine keeps near-copies of a query photo on top, where the trained image tower blurs them; the
head brings synonyms, images for words and products without text. Product and history queries do not come here:
they search the graph encoder's index (what is bought together).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..index import Filter, SearchResult, VectorIndex
from ..models.relevance import RelevanceEncoder
from ._retriever import QueryBatch
from .bm25 import BM25Retriever
from .fusion import ranks, reciprocal_rank_fusion


class HybridRetrieval:
    def __init__(self, head: RelevanceEncoder, index: VectorIndex, rows: Mapping[str, int],
                 bm25: BM25Retriever | None = None, images: tuple[np.ndarray, np.ndarray] | None = None,
                 depth: int = 100, bm25_weight: float = 1.0, image_weight: float = 1.0, k: float = 60.0):
        """``rows``: product id -> catalog row; ``images``: the products' raw image features (unit rows, any float
        dtype) and their presence mask, in catalog order."""
        self.head, self.index, self.rows, self.bm25, self.images = head, index, rows, bm25, images
        self.depth, self.bm25_weight, self.image_weight, self.k = depth, bm25_weight, image_weight, k

    @torch.no_grad()
    def search(self, features: Mapping[str, torch.Tensor], texts: Sequence[str] | None, k: int,
               filter: Filter | None = None, exclude: Sequence[Sequence[str]] | None = None) -> SearchResult:
        """Top ``max(k, depth)`` per query, best first; ``texts`` (one per query, or ``None``) turn on BM25, image
        features the raw image re-scoring."""
        vectors = self.head.embed_query_features(**features).numpy()
        found = self.index.search(vectors, max(k, self.depth), filter=filter, exclude=exclude)
        rankers = []  # (weight, [Q, C] scores of each query's candidates, from catalog rows)
        if texts is not None and self.bm25 is not None and self.bm25_weight:
            lexical = self.bm25.scores(QueryBatch(list(texts)))
            rankers.append((self.bm25_weight, lambda q, rows: lexical[q, rows]))
        if "image" in features and self.images is not None and self.image_weight:
            query = F.normalize(features["image"].float(), dim=-1).numpy()
            items, ok = self.images
            rankers.append((self.image_weight, lambda q, rows: np.where(
                ok[rows], np.asarray(items[rows], np.float32) @ query[q], -np.inf)))
        if not rankers:
            return found
        weights = [1.0, *(w for w, _ in rankers)]
        ids, scores = [], []
        for q, row_ids in enumerate(found.ids):
            rows = np.array([self.rows[i] for i in row_ids], np.int64)
            rank_lists = [np.arange(1, len(rows) + 1, dtype=np.float64),
                          *(ranks(score(q, rows)[None])[0] for _, score in rankers)]
            fused = reciprocal_rank_fusion(rank_lists, weights, self.k) * (self.k + 1) / sum(weights)
            order = np.argsort(-fused, kind="stable")
            ids.append([row_ids[i] for i in order])
            scores.append(fused[order].astype(np.float32))
        return SearchResult(ids, scores)
