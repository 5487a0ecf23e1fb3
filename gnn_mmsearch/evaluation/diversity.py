"""Diversity of result lists: intra-list diversity (embedding spread) and category coverage."""
from __future__ import annotations

from typing import Hashable, Iterable, Sequence

import numpy as np


def intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean pairwise ``1 - cosine`` over the items of one list (``[n, d]``); 0 for fewer than 2 items."""
    x = np.asarray(vectors, np.float64)
    n = len(x)
    if n < 2:
        return 0.0
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    total = x.sum(axis=0)
    off_diagonal = total @ total - np.einsum("ij,ij->", x, x)  # sum_{i != j} cos(x_i, x_j), in O(n d)
    return float(1.0 - off_diagonal / (n * (n - 1)))


def category_coverage(result_categories: Iterable[Hashable | Sequence[str] | None], num_categories: int) -> float:
    """Fraction of ``num_categories`` present among one list's item categories.

    An item's category may be any hashable label or a category path (a list, counted as one category); ``None`` is
    skipped.
    """
    if num_categories < 1:
        raise ValueError(f"num_categories must be positive, got {num_categories}")
    seen = {tuple(c) if isinstance(c, list) else c for c in result_categories if c is not None}
    return len(seen) / num_categories


def mean_intra_list_diversity(lists: Iterable[np.ndarray]) -> float:
    """:func:`intra_list_diversity` averaged over queries (0 for no queries)."""
    values = [intra_list_diversity(v) for v in lists]
    return float(np.mean(values)) if values else 0.0


def mean_category_coverage(lists: Iterable[Iterable[Hashable | Sequence[str] | None]], num_categories: int) -> float:
    """:func:`category_coverage` averaged over queries (0 for no queries)."""
    values = [category_coverage(c, num_categories) for c in lists]
    return float(np.mean(values)) if values else 0.0
