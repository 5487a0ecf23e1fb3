"""BM25 (``bm25s``) over each product's title, description and brand."""
from __future__ import annotations

import logging

import numpy as np

from ..data.catalog import Catalog, Product
from ..features import ProductFeatures
from ._retriever import RETRIEVERS, QueryBatch, Retriever


def product_document(product: Product) -> str:
    """The text BM25 indexes: title, description and brand (empty when the product has none)."""
    return " ".join(p.strip() for p in (product.title, product.description, product.brand) if p and p.strip())


@RETRIEVERS.register("bm25")
class BM25Retriever(Retriever):
    """Lucene-style BM25 with English stopwords; products without text score ``-inf``."""

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b

    def fit(self, catalog: Catalog, features: ProductFeatures | None = None) -> "BM25Retriever":
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        docs = [product_document(p) for p in catalog.products]
        self.has_text = np.array([bool(d) for d in docs])
        self.model = bm25s.BM25(k1=self.k1, b=self.b)
        self.model.index(bm25s.tokenize([d or "_" for d in docs], stopwords="en", show_progress=False),
                         show_progress=False)
        return self

    def supports(self, queries: QueryBatch) -> bool:
        return queries.texts is not None

    def scores(self, queries: QueryBatch) -> np.ndarray:
        import bm25s

        tokens = bm25s.tokenize(list(queries.texts), stopwords="en", return_ids=False, show_progress=False)
        out = np.stack([self.model.get_scores(t) if t else np.zeros(len(self.has_text)) for t in tokens])
        out = out.astype(np.float32)
        out[:, ~self.has_text] = -np.inf
        return out
