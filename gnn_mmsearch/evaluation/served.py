"""Relevance and diversity of the result lists the served pipeline returns (``Searcher.serve``).

Relevance: each list has a set of relevant products (e.g. the one product a title query was derived from, or a
user's held-out items); recall, precision, NDCG and MRR @k come from :class:`RetrievalMetrics` (PyG's
``LinkPred*``, binary gains). Diversity: ``ild@k`` is the mean intra-list diversity (mean pairwise ``1 - cosine`` of
the items' index vectors) and ``coverage@k`` the number of distinct categories (full category paths, i.e. leaf
categories) among the top ``k`` divided by ``k``, averaged over lists.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Collection, Mapping, Sequence

import numpy as np
import torch

from ..index import VectorIndex
from .diversity import mean_category_coverage, mean_intra_list_diversity
from .retrieval import RetrievalMetrics

if TYPE_CHECKING:
    from ..ranking import RankQuery
    from ..search import Searcher


def list_metrics(lists: Sequence[Sequence[str]], targets: Sequence[Collection[str]], index: VectorIndex,
                 categories: Mapping[str, Sequence[str] | None], k: int = 10) -> dict[str, float]:
    """``recall/precision/ndcg/mrr@k`` of list ``i`` against the relevant ids ``targets[i]``, plus ``ild@k`` and
    ``coverage@k``."""
    if len(lists) != len(targets):
        raise ValueError(f"{len(lists)} result lists but {len(targets)} targets")
    lists = [list(ids[:k]) for ids in lists]
    code = {pid: i for i, pid in enumerate(dict.fromkeys([*(t for ts in targets for t in ts),
                                                           *(pid for ids in lists for pid in ids)]))}
    pad = len(code)  # never a target: fills lists shorter than k
    pred = torch.tensor([[code[pid] for pid in ids] + [pad] * (k - len(ids)) for ids in lists], dtype=torch.long)
    relevant = torch.tensor([[i, code[t]] for i, ts in enumerate(targets) for t in ts], dtype=torch.long)
    metrics = RetrievalMetrics((k,))
    metrics.update(pred.reshape(len(lists), k), relevant.reshape(-1, 2).t())
    out = metrics.compute()
    out[f"ild@{k}"] = mean_intra_list_diversity(index.vectors(ids) for ids in lists)
    out[f"coverage@{k}"] = mean_category_coverage(([categories.get(pid) or None for pid in ids] for ids in lists), k)
    return out


def served_query_metrics(searcher: Searcher, vectors: np.ndarray, queries: Sequence[RankQuery],
                         targets: Sequence[str], k: int, features: dict | None = None,
                         texts: Sequence[str] | None = None) -> dict[str, float]:
    """Diversity of the served top-``k`` lists for text queries (``diversity/*``, diversify stage off) and, when the
    pipeline diversifies, their relevance and diversity as served (``text_query_mmr/*``, ``diversity_mmr/*``)."""
    categories = {p.id: p.category for p in searcher.catalog.products}
    relevant = [{t} for t in targets]

    def measure(mmr_lambda: float | None) -> dict[str, float]:
        lists = [r.ids for r in searcher.serve(vectors, queries, k, mmr_lambda=mmr_lambda, features=features,
                                               texts=texts)]
        return list_metrics(lists, relevant, searcher.index, categories, k)

    plain = measure(1.0)
    out = {f"diversity/{m}@{k}": plain[f"{m}@{k}"] for m in ("ild", "coverage")}
    if searcher.pipeline.lambda_for(None) is not None:
        res = measure(None)
        out.update({f"text_query_mmr/{m}@{k}": res[f"{m}@{k}"] for m in ("recall", "ndcg")})
        out.update({f"diversity_mmr/{m}@{k}": res[f"{m}@{k}"] for m in ("ild", "coverage")})
    return out
