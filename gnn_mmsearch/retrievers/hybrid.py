"""The served first stage of text and image queries: the relevance head's index, its candidates re-scored by a
reciprocal rank fusion with BM25 (text queries).

    candidates = relevance_index.search(head(query), depth)           # filters and exclusions apply here
    score(d)   = (w_head / (k + rank_head(d)) + w_bm25 / (k + rank_bm25(d))) * (k + 1) / (w_head + w_bm25)

so a product first for both scores 1. BM25 brings exact terms (a brand, a model name, a typo-free noun); the head
brings synonyms, images and products without text. Product and history queries do not come here: they search
the graph encoder's index (what is bought together).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..index import Filter, SearchResult, VectorIndex
from ..models.relevance import RelevanceEncoder
from ._retriever import QueryBatch
from .bm25 import BM25Retriever
from .fusion import ranks


class HybridRetrieval:
    def __init__(self, head: RelevanceEncoder, index: VectorIndex, bm25: BM25Retriever | None = None,
                 depth: int = 100, bm25_weight: float = 1.0, k: float = 60.0):
        self.head, self.index, self.bm25 = head, index, bm25
        self.depth, self.bm25_weight, self.k = depth, bm25_weight, k

    @torch.no_grad()
    def search(self, features: Mapping[str, torch.Tensor], texts: Sequence[str] | None, k: int,
               filter: Filter | None = None, exclude: Sequence[Sequence[str]] | None = None) -> SearchResult:
        """Top ``max(k, depth)`` per query, best first; ``texts`` (one per query, or ``None``: image queries) turn
        on the BM25 half."""
        vectors = self.head.embed_query_features(**features).numpy()
        found = self.index.search(vectors, max(k, self.depth), filter=filter, exclude=exclude)
        if texts is None or self.bm25 is None or not self.bm25_weight:
            return found
        lexical = self.bm25.scores(QueryBatch(list(texts)))
        ids, scores = [], []
        for q, (row_ids, row_scores) in enumerate(zip(found.ids, found.scores)):
            if not row_ids:
                ids.append(row_ids)
                scores.append(row_scores)
                continue
            rows = [self.bm25.row[i] for i in row_ids]
            head_rank = np.arange(1, len(row_ids) + 1, dtype=np.float64)
            bm25_rank = ranks(lexical[q, rows][None])[0]
            fused = (1.0 / (self.k + head_rank) + self.bm25_weight / (self.k + bm25_rank))
            fused *= (self.k + 1) / (1.0 + self.bm25_weight)
            order = np.argsort(-fused, kind="stable")
            ids.append([row_ids[i] for i in order])
            scores.append(fused[order].astype(np.float32))
        return SearchResult(ids, scores)
