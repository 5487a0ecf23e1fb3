"""Relevance and diversity of the result lists an index serves, as they are or re-ranked by MMR.

Relevance: each list has one relevant product (e.g. the product a title query was derived from); recall, precision,
NDCG and MRR @k come from :class:`RetrievalMetrics`. Diversity: ``ild@k`` is the mean intra-list diversity (mean
pairwise ``1 - cosine`` of the items' index vectors) and ``coverage@k`` the number of distinct categories (full
category paths, i.e. leaf categories) among the top ``k`` divided by ``k``, averaged over lists.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..index import SearchResult, VectorIndex
from ..rerank import MMRReranker
from .diversity import mean_category_coverage, mean_intra_list_diversity
from .retrieval import RetrievalMetrics


def top_lists(candidates: SearchResult, index: VectorIndex, k: int, mmr_lambda: float | None = None) -> list[list[str]]:
    """The first ``k`` ids of each candidate list, or ``k`` of them picked by MMR when ``mmr_lambda`` is set."""
    if mmr_lambda is None:
        return [ids[:k] for ids in candidates.ids]
    return MMRReranker(mmr_lambda, k).rerank(candidates, index).ids


def list_metrics(lists: Sequence[Sequence[str]], targets: Sequence[str], index: VectorIndex,
                 categories: Mapping[str, Sequence[str] | None], k: int = 10) -> dict[str, float]:
    """``recall/precision/ndcg/mrr@k`` against ``targets[i]`` for list ``i``, plus ``ild@k`` and ``coverage@k``."""
    if len(lists) != len(targets):
        raise ValueError(f"{len(lists)} result lists but {len(targets)} targets")
    lists = [list(ids[:k]) for ids in lists]
    code = {pid: i for i, pid in enumerate(dict.fromkeys([*targets, *(pid for ids in lists for pid in ids)]))}
    pad = len(code)  # never a target: fills lists shorter than k
    pred = torch.tensor([[code[pid] for pid in ids] + [pad] * (k - len(ids)) for ids in lists], dtype=torch.long)
    relevant = torch.tensor([[i, code[t]] for i, t in enumerate(targets)], dtype=torch.long).t()
    metrics = RetrievalMetrics((k,))
    metrics.update(pred.reshape(len(lists), k), relevant)
    out = metrics.compute()
    out[f"ild@{k}"] = mean_intra_list_diversity(index.vectors(ids) for ids in lists)
    out[f"coverage@{k}"] = mean_category_coverage(([categories.get(pid) or None for pid in ids] for ids in lists), k)
    return out


def served_metrics(index: VectorIndex, queries: np.ndarray, targets: Sequence[str],
                   categories: Mapping[str, Sequence[str] | None], k: int = 10,
                   mmr_lambdas: Sequence[float | None] = (None,), candidates: int = 100) -> list[dict[str, float]]:
    """:func:`list_metrics` of the index's top-``k`` lists for ``queries``, once per entry of ``mmr_lambdas`` (``None``:
    no re-ranking); MMR picks from the top ``candidates``, all from one index search."""
    depth = k if all(lam is None for lam in mmr_lambdas) else max(k, candidates)
    found = index.search(queries, depth)
    return [list_metrics(top_lists(found, index, k, lam), targets, index, categories, k) for lam in mmr_lambdas]
