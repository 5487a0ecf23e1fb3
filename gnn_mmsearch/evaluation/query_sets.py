"""The search job's query sets, and how any ranking of them is scored: the trained model's and every baseline's.

* ``text_query``: title-derived queries of held-out products, one relevant product each (``queries.py``);
* ``attribute_query``: shopper-style attribute queries with graded relevance over every product, on catalogs with a
  ground truth (``attribute_queries.py``);
* ``image_query``: held-out products' photos, re-cropped and colour-jittered, one relevant product each
  (``image_queries.py``).

Every query's raw features come from one pass of the encoder's own extractors, shared by the model and the raw
baselines. Baselines (``eval.baselines``: name -> retriever config) score every query set they can answer and, when
they can embed products (raw features), the held-out co-purchase links: ``baseline/<name>/<set>/<metric>@k``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .._topk import top_k_indices
from ..data.catalog import Catalog
from ..data.splits import EdgeSplit
from ..features import ProductFeatures
from ..retrievers import RETRIEVERS, QueryBatch
from ..ranking.modal import split_query_features
from .attribute_queries import attribute_queries, graded_metrics, ground_truth, relevance
from .image_queries import image_queries
from .queries import title_queries
from .retrieval import RetrievalMetrics, block_rows, evaluate_copurchase, top_k


@dataclass
class QuerySet:
    name: str
    queries: QueryBatch
    targets: list[int] | None = None  # one relevant product row per query
    relevance: np.ndarray | None = None  # or graded relevance [Q, N]

    def score(self, ranked: torch.Tensor, ks: Sequence[int], metrics=("recall", "precision", "ndcg", "mrr")) -> dict:
        """Metrics of ``ranked [Q, >=max k]`` product rows per query."""
        if self.relevance is not None:
            return graded_metrics(ranked, self.relevance, ks)
        m = RetrievalMetrics(ks, metrics)
        m.update(ranked, torch.stack([torch.arange(len(self.targets)), torch.tensor(self.targets)]))
        return m.compute()


def query_sets(catalog: Catalog, encoder, rows: Sequence[int], seed: int, work_dir: Path) -> list[QuerySet]:
    """The query sets of the held-out products ``rows`` (image queries are written to ``work_dir``); sets with no
    query (e.g. a catalog without images) are left out."""
    out = []
    texts, targets = title_queries(catalog.products, rows, seed)
    if texts:
        out.append(QuerySet("text_query", QueryBatch(texts, encoder.query_features(text=texts)), targets))
    truth = ground_truth(catalog)
    if truth is not None:
        attribute = attribute_queries(truth, rows, seed)
        texts = [q.text for q in attribute]
        out.append(QuerySet("attribute_query", QueryBatch(texts, encoder.query_features(text=texts)),
                            relevance=relevance(attribute, truth)))
    paths, targets = image_queries(catalog, rows, work_dir, seed)
    if paths:
        out.append(QuerySet("image_query", QueryBatch(features=encoder.query_features(image=paths)), targets))
    return out


@torch.no_grad()
def evaluate_model(embed_queries: Callable[[dict], torch.Tensor], sets: Sequence[QuerySet], items: torch.Tensor,
                   ks: Sequence[int]) -> dict[str, float]:
    """``<set>/<metric>@k`` of query embeddings (``embed_queries(raw features)``) ranked against the product
    embeddings ``items`` (exact search)."""
    out = {}
    for qs in sets:
        ranked = top_k(embed_queries(qs.queries.features), items, max(ks))
        out.update({f"{qs.name}/{k}": v for k, v in qs.score(ranked, ks).items()})
    return out


def evaluate_served(searcher, sets: Sequence[QuerySet], ks: Sequence[int]) -> dict[str, float]:
    """``<set>/<metric>@k`` of the lists ``Searcher.serve`` returns for every query set (diversify stage off): what
    ``gnn-mmsearch search`` answers, hybrid relevance retrieval and ranker included."""
    row = searcher.catalog.index_of
    pad, depth, out = len(row), max(ks), {}
    for qs in sets:
        features = qs.queries.features
        vectors = searcher.encoder.embed_queries(features).detach().numpy()
        modal = split_query_features(features, searcher.pipeline.table.modal)
        queries = [searcher.pipeline.query(v, searcher.index.vectors, modal=m) for v, m in zip(vectors, modal)]
        served = searcher.serve(vectors, queries, depth, mmr_lambda=1.0, features=features, texts=qs.queries.texts)
        ranked = torch.tensor([[row[i] for i in r.ids] + [pad] * (depth - len(r.ids)) for r in served])
        out.update({f"{qs.name}/{k}": v for k, v in qs.score(ranked, ks).items()})
    return out


def evaluate_baselines(baselines: Mapping[str, Mapping], catalog: Catalog, features: ProductFeatures,
                       sets: Sequence[QuerySet], split: EdgeSplit | None, ks: Sequence[int],
                       max_queries: int | None = None, seed: int = 0) -> dict[str, float]:
    """``baseline/<name>/<set>/{recall,ndcg}@k`` for every baseline and query set it answers, plus (with a
    ``split``) ``baseline/<name>/copurchase/...`` for baselines that answer product queries (at most
    ``max_queries`` of them, drawn with ``seed``). Queries are scored a block at a time (bounded memory)."""
    out, block = {}, block_rows(len(catalog))
    for name, spec in baselines.items():
        spec = dict(spec)
        retriever = RETRIEVERS.create(spec.pop("name"), **spec).fit(catalog, features)
        for qs in sets:
            if retriever.supports(qs.queries):
                ranked = torch.cat([_top(retriever.scores(qs.queries.take(slice(start, start + block))), max(ks))
                                    for start in range(0, len(qs.queries), block)])
                metrics = qs.score(ranked, ks, ("recall", "ndcg"))
                out.update({f"baseline/{name}/{qs.name}/{k}": v for k, v in metrics.items()})
        product_scores = retriever.product_scores() if split is not None else None
        if product_scores is not None:
            metrics = evaluate_copurchase(product_scores, split, "test", ks, max_queries, seed)
            out.update({f"baseline/{name}/copurchase/{k}": metrics[k] for k in metrics if k.split("@")[0] in
                        ("recall", "ndcg")})
    return out


def _top(scores: np.ndarray, k: int) -> torch.Tensor:
    return top_k_indices(torch.from_numpy(scores), k)


HEADLINE = ("text_query/recall@10", "attribute_query/ndcg@10", "image_query/recall@10", "copurchase/recall@10",
            "crossmodal/recall@10")


OTHER_ROWS = {"graph_space": "graph space", "bound": "query-set ceiling"}  # metric prefix -> row


def side_by_side(metrics: Mapping[str, float], columns: Sequence[str] = HEADLINE) -> str:
    """What ``search`` serves, the graph space alone, every baseline and the query set's ceiling in one table, one
    column per headline metric ('-': not answered)."""
    rows = {"served (trained)": {c: metrics.get(c) for c in columns}}
    for key, value in metrics.items():
        prefix, _, rest = key.partition("/")
        name, metric = rest.split("/", 1) if prefix == "baseline" and "/" in rest else (OTHER_ROWS.get(prefix), rest)
        if name and metric in columns:
            rows.setdefault(name, {})[metric] = value
    shown = [c for c in columns if any(r.get(c) is not None for r in rows.values())]
    width = max(len(n) for n in rows) + 2
    lines = ["model".ljust(width) + "".join(c.rjust(max(len(c), 8) + 2) for c in shown)]
    for name, row in rows.items():
        lines.append(name.ljust(width) + "".join(
            (f"{row[c]:.4f}" if row.get(c) is not None else "-").rjust(max(len(c), 8) + 2) for c in shown))
    return "\n".join(lines)
