"""Top-K retrieval metrics (Recall, Precision, NDCG, MRR, MAP @K) on PyG's link-prediction metric classes."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch_geometric.metrics import (LinkPredMAP, LinkPredMetricCollection, LinkPredMRR, LinkPredNDCG,
                                     LinkPredPrecision, LinkPredRecall)

from .._topk import top_k_indices
from ..data.splits import EdgeSplit
from ..retrievers.copurchase import CopurchaseGraph, ProductScores

_METRICS = {"recall": LinkPredRecall, "precision": LinkPredPrecision, "ndcg": LinkPredNDCG, "mrr": LinkPredMRR,
            "map": LinkPredMAP}


class RetrievalMetrics:
    """Accumulates ranked predictions against ground-truth targets and reports flat ``name@k`` floats.
    ``weighted``: NDCG uses each target's weight as its gain (graded relevance)."""

    def __init__(self, ks=(10, 20, 50), metrics=("recall", "precision", "ndcg", "mrr"), weighted: bool = False):
        self.ks = tuple(sorted(ks))
        self.collection = LinkPredMetricCollection(
            {f"{name}@{k}": LinkPredNDCG(k, weighted=True) if weighted and name == "ndcg" else _METRICS[name](k)
             for k in self.ks for name in metrics})

    def update(self, pred_index: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """``pred_index [Q, >=max_k]`` ranked item ids per query; ``targets [2, T]`` (query row, relevant item);
        ``weights [T]`` their gains (weighted NDCG)."""
        self.collection.update(pred_index[:, : self.ks[-1]], targets, weights)

    def compute(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.collection.compute().items()}


def block_rows(num_items: int, max_rows: int = 4096, max_scores: int = 1 << 25) -> int:
    """Queries scored at a time against ``num_items`` items: ``max_rows``, fewer when their score block would pass
    ``max_scores`` floats (128 MiB), so a large catalog is ranked in bounded memory."""
    return max(1, min(max_rows, max_scores // max(1, num_items)))


def sample_queries(queries: Sequence[int] | torch.Tensor, max_queries: int | None, seed: int) -> list[int]:
    """At most ``max_queries`` of ``queries`` (distinct ids), drawn with ``seed`` and kept in their order; all of
    them when ``max_queries`` is ``None`` or not smaller (``eval.max_queries``)."""
    queries = [int(q) for q in queries]
    if max_queries is None or max_queries >= len(queries):
        return queries
    keep = np.sort(np.random.default_rng([seed, 23]).choice(len(queries), max_queries, replace=False))
    return [queries[i] for i in keep]


@torch.no_grad()
def top_k(queries: torch.Tensor, items: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
          chunk: int | None = None) -> torch.Tensor:
    """Exact top-``k`` item ids by inner product; ``exclude [2, X]`` (query row, item) pairs are never returned."""
    return top_k_scores(lambda rows: queries[rows] @ items.t(), queries.size(0), k, exclude,
                        chunk or block_rows(items.size(0)))


@torch.no_grad()
def top_k_scores(scores: Callable[[torch.Tensor], torch.Tensor], num_queries: int, k: int,
                 exclude: torch.Tensor | None = None, chunk: int = 4096) -> torch.Tensor:
    """Top-``k`` item ids of ``scores(query rows) -> [len(rows), N]``, computed ``chunk`` queries at a time."""
    out = []
    for start in range(0, num_queries, chunk):
        block = scores(torch.arange(start, min(start + chunk, num_queries))).clone()
        if exclude is not None and exclude.numel():
            sel = (exclude[0] >= start) & (exclude[0] < start + chunk)
            block[exclude[0, sel] - start, exclude[1, sel]] = float("-inf")
        out.append(top_k_indices(block, k))
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)


def evaluate_copurchase(scores: torch.Tensor | ProductScores, split: EdgeSplit, stage: str,
                        ks=(10, 20, 50), max_queries: int | None = None, seed: int = 0) -> dict[str, float]:
    """Rank all products for every endpoint of a held-out link of ``stage`` (at most ``max_queries`` endpoints,
    drawn with ``seed``); the other endpoint is relevant.
    ``scores``: product embeddings (inner product) or product-query scores over the stage's visible graph
    (``retrievers.copurchase``). The product itself and the links visible at that stage (train links,
    message-passing graph) are excluded."""
    held = {"val": split.val, "test": split.test}[stage]
    pairs = torch.cat([held, held.flip(0)], dim=1)
    sources = pairs[0].unique()
    if max_queries is not None and max_queries < sources.numel():
        pairs = pairs[:, torch.isin(pairs[0], torch.tensor(sample_queries(sources, max_queries, seed)))]
    sources, rows = pairs[0].unique(return_inverse=True)
    visible = split.message_passing(stage)
    known = torch.cat([split.train, visible] + ([split.val] if stage == "test" else []), dim=1)
    known = torch.cat([known, known.flip(0), torch.stack([sources, sources])], dim=1)
    row_of = torch.full((split.num_nodes,), -1, dtype=torch.long)
    row_of[sources] = torch.arange(sources.numel())
    known = known[:, row_of[known[0]] >= 0]
    exclude = torch.stack([row_of[known[0]], known[1]])
    if isinstance(scores, torch.Tensor):  # embeddings: no graph signal to build (the trainer validates every epoch)
        emb = scores
        score = lambda r: emb[sources[r]] @ emb.t()  # noqa: E731
    else:
        graph = CopurchaseGraph(visible, split.num_nodes)
        score = lambda r: scores(sources[r], graph)  # noqa: E731
    metrics = RetrievalMetrics(ks)
    ranked = top_k_scores(score, sources.numel(), max(ks), exclude, block_rows(split.num_nodes))
    metrics.update(ranked, torch.stack([rows, pairs[1]]))
    return metrics.compute()


def evaluate_queries(query_emb: torch.Tensor, targets: torch.Tensor, item_emb: torch.Tensor,
                     ks=(10, 20, 50)) -> dict[str, float]:
    """Each query row ``i`` has exactly one relevant item ``targets[i]``."""
    metrics = RetrievalMetrics(ks)
    rows = torch.arange(query_emb.size(0))
    metrics.update(top_k(query_emb, item_emb, max(ks)), torch.stack([rows, targets]))
    return metrics.compute()
