"""Attribute queries a shopper types ("red leather wallet"), generated from a synthetic catalog's ground truth, with
graded relevance over every product (also those without text or without an image: their attributes are known).

A query is a category noun (one of the category's synonyms) plus 1-2 of colour (a colour synonym), material and
pattern (never "solid"), drawn from an anchor product so at least one product matches. Relevance: 2 when the
category and every named attribute match, 1 when only the category does, else 0. NDCG@k uses gains ``2^rel - 1``
(3 and 1) over the ideal ranking of all products; Recall@k counts the grade-2 products found.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data.catalog import Catalog
from ..data.synthetic import CATEGORIES, COLORS
from .retrieval import RetrievalMetrics

ATTRIBUTES = ("color", "material", "pattern")


@dataclass
class AttributeQuery:
    text: str
    category: str
    attributes: dict[str, str]  # attribute -> ground-truth value, e.g. {"color": "red", "material": "leather"}


def ground_truth(catalog: Catalog) -> dict[str, list] | None:
    """Per-product ``category`` and ``ATTRIBUTES`` of a synthetic catalog, or ``None`` for a catalog without them."""
    truth = (catalog.meta or {}).get("ground_truth") or {}
    if not all(a in truth for a in ATTRIBUTES):
        return None
    return {**{a: truth[a] for a in ATTRIBUTES}, "category": [p.category[-1] for p in catalog.products]}


def attribute_queries(truth: dict[str, list], anchors: Sequence[int], seed: int) -> list[AttributeQuery]:
    """One query per anchor product (deterministic in ``seed``); a repeat of an earlier query text is skipped."""
    rng = np.random.default_rng([seed, 11])
    out, seen = [], set()
    for i in map(int, anchors):
        cat = truth["category"][i]
        names = [a for a in ATTRIBUTES if not (a == "pattern" and truth["pattern"][i] == "solid")]
        chosen = sorted(rng.choice(names, size=min(len(names), int(rng.integers(1, 3))), replace=False).tolist(),
                        key=ATTRIBUTES.index)
        attrs = {a: truth[a][i] for a in chosen}
        words = [str(rng.choice(COLORS[attrs["color"]][1]))] if "color" in attrs else []
        words += [attrs[a] for a in ("pattern", "material") if a in attrs]
        words.append(str(rng.choice(CATEGORIES[cat][1])))
        text = " ".join(words).lower()
        if text not in seen:
            seen.add(text)
            out.append(AttributeQuery(text, cat, attrs))
    return out


def relevance(queries: Sequence[AttributeQuery], truth: dict[str, list]) -> np.ndarray:
    """``int8 [Q, N]`` graded relevance: 2 every named attribute matches, 1 the category only, 0 otherwise."""
    cats = np.asarray(truth["category"])
    rel = np.zeros((len(queries), len(cats)), dtype=np.int8)
    for q, query in enumerate(queries):
        same = cats == query.category
        full = same.copy()
        for a, v in query.attributes.items():
            full &= np.asarray(truth[a]) == v
        rel[q, same] = 1
        rel[q, full] = 2
    return rel


def graded_metrics(ranked: torch.Tensor, rel: np.ndarray, ks=(10,)) -> dict[str, float]:
    """``ndcg@k`` (gains ``2^rel - 1``) and ``recall@k`` (grade-2 products) of ``ranked [Q, >=max k]`` product
    rows per query against the graded relevance ``rel [Q, N]``."""
    q, item = np.nonzero(rel)
    gains = torch.from_numpy(2.0 ** rel[q, item] - 1).float()
    ndcg = RetrievalMetrics(ks, ("ndcg",), weighted=True)
    ndcg.update(ranked, torch.from_numpy(np.stack([q, item])).long(), gains)
    q2, item2 = np.nonzero(rel == 2)
    recall = RetrievalMetrics(ks, ("recall",))
    recall.update(ranked, torch.from_numpy(np.stack([q2, item2])).long())
    return {**ndcg.compute(), **recall.compute()}
