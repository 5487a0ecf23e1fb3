"""Search queries derived from product titles: what a shopper might type for a product they saw."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from ..data.catalog import Product


def _title_words(product: Product) -> list[str]:
    """The lower-cased title's words without its leading brand."""
    title, brand = (product.title or "").lower(), (product.brand or "").lower().strip()
    if brand and (title == brand or title.startswith(brand + " ")):
        title = title[len(brand):]
    return title.split()


def title_query(product: Product, rng: np.random.Generator, drop: float = 0.3) -> str | None:
    """Lower-cased title without its leading brand, with words dropped at random (the last word, usually the noun, kept)."""
    words = _title_words(product)
    if len(words) <= 2:
        return " ".join(words) or None
    kept = [w for w in words[:-1] if rng.random() >= drop] + [words[-1]]
    return " ".join(kept if len(kept) >= 2 else words[-2:])


def title_query_probability(query: str, product: Product, drop: float = 0.3) -> float:
    """The chance that ``title_query(product)`` returns ``query``: a sum over the sets of kept words that spell it."""
    return _probability(query.split(), _title_words(product), drop)


def _probability(q: list[str], words: list[str], drop: float) -> float:
    if len(words) <= 2 or not q or q[-1] != words[-1]:
        return float(q == words)
    head, m, n = q[:-1], len(q) - 1, len(words) - 1
    spellings = [1] + [0] * m  # spellings[j]: ways to pick head[:j], in order, from the words seen so far
    for word in words[:-1]:
        for j in range(m, 0, -1):
            if head[j - 1] == word:
                spellings[j] += spellings[j - 1]
    p = spellings[m] * (1 - drop) ** m * drop ** (n - m) if 1 <= m <= n else 0.0
    return p + (drop ** n if q == words[-2:] else 0.0)  # every word dropped: the last two are the query


def title_query_bound(products: Sequence[Product], queries: Sequence[str], targets: Sequence[int],
                      ks: Sequence[int], drop: float = 0.3) -> dict[str, float]:
    """``recall@k`` that no ranker beats in expectation on these title queries: every product ranked by the chance
    that the generator gives the query from it (Bayes-optimal when any product may be the target), ties in random
    order. Only products whose title ends with the query's last word can give it."""
    titles = [_title_words(p) for p in products]
    by_last = defaultdict(list)
    for words in titles:
        if words:
            by_last[words[-1]].append(words)
    recall = np.zeros(len(ks))
    for query, target in zip(queries, targets):
        q = query.split()
        p_target = _probability(q, titles[target], drop)
        above = ties = 0
        for words in by_last[q[-1]]:
            p = _probability(q, words, drop)
            if math.isclose(p, p_target, rel_tol=1e-9):
                ties += 1
            elif p > p_target:
                above += 1
        recall += [min(1.0, max(0.0, (k - above) / ties)) for k in ks]
    return {f"recall@{k}": float(r) for k, r in zip(ks, recall / max(len(queries), 1))}


def title_queries(products: list[Product], indices, seed: int) -> tuple[list[str], list[int]]:
    """Queries and their target product indices for the products at ``indices`` that have a title."""
    rng = np.random.default_rng(seed)
    queries, targets = [], []
    for i in indices:
        q = title_query(products[int(i)], rng)
        if q:
            queries.append(q)
            targets.append(int(i))
    return queries, targets
