"""Search queries derived from product titles: what a shopper might type for a product they saw."""
from __future__ import annotations

import numpy as np

from ..data.catalog import Product


def title_query(product: Product, rng: np.random.Generator, drop: float = 0.3) -> str | None:
    """Lower-cased title without its leading brand, with words dropped at random (the last word, usually the noun, kept)."""
    if not product.title:
        return None
    title, brand = product.title.lower(), (product.brand or "").lower().strip()
    if brand and (title == brand or title.startswith(brand + " ")):
        title = title[len(brand):]
    words = title.split()
    if len(words) <= 2:
        return " ".join(words) or None
    kept = [w for w in words[:-1] if rng.random() >= drop] + [words[-1]]
    return " ".join(kept if len(kept) >= 2 else words[-2:])


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
