"""NDCG@k and recall@k with several relevant items per query, and the diversity of ranked lists."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..evaluation.diversity import mean_category_coverage, mean_intra_list_diversity
from ..index import VectorIndex
from .pipeline import RankingPipeline


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    gains = [1.0 / np.log2(r + 2) for r, pid in enumerate(ranked[:k]) if pid in relevant]
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(relevant))))
    return float(sum(gains) / ideal) if ideal else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def evaluate(pipeline: RankingPipeline, index: VectorIndex, targets: Sequence[set[str]], candidates, rank_queries,
             categories: Mapping[str, Sequence[str]], k: int = 10) -> dict[str, float]:
    """Mean ``ndcg@k``, ``recall@k``, ``ild@k`` and ``coverage@k`` of the pipeline's lists for the queries."""
    lists = [pipeline.rank(ids, scores, index.vectors(ids), rq, k).ids
             for (ids, scores), rq in zip(candidates, rank_queries)]
    return {f"ndcg@{k}": float(np.mean([ndcg_at_k(ids, t, k) for ids, t in zip(lists, targets)])),
            f"recall@{k}": float(np.mean([recall_at_k(ids, t, k) for ids, t in zip(lists, targets)])),
            f"ild@{k}": mean_intra_list_diversity(index.vectors(ids) for ids in lists),
            f"coverage@{k}": mean_category_coverage(([categories.get(p) for p in ids] for ids in lists), k)}
