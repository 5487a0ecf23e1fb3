"""BM25 (``bm25s``) over each product's title, description and brand (plus, when given, a title field and expansion
words)."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..data.catalog import Catalog, Product
from ..features import ProductFeatures
from ._retriever import RETRIEVERS, QueryBatch, Retriever

TOKEN_PATTERN = r"(?u)\b\w+\b"  # every word, one-character ones too ("multipack of 4"), as Lucene's standard tokenizer


def product_document(product: Product) -> str:
    """The text BM25 indexes: title, description and brand (empty when the product has none)."""
    return " ".join(p.strip() for p in (product.title, product.description, product.brand) if p and p.strip())


@RETRIEVERS.register("bm25")
class BM25Retriever(Retriever):
    """Lucene-style BM25 with English stopwords; products without text score ``-inf``. Other fields add their own
    BM25 score at their weight (Elasticsearch's ``multi_match`` of type ``most_fields``)::

        score = bm25(text) + title_weight * bm25(title) + expansion_weight * bm25(expansion words)

    ``title_weight``: a title boost (fixed at :meth:`fit`: 0 indexes no title field), so a product whose title names
    the query words outranks one whose long description repeats them. ``expansions``: extra words per product, in
    catalog order (``retrievers/expansion.py``), so a word a product's text holds counts more than one only its
    image suggests, and a product with expansion words but no text is found too."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, expansions: Sequence[Sequence[str]] | None = None,
                 expansion_weight: float = 1.0, title_weight: float = 0.0):
        if title_weight < 0:
            raise ValueError(f"title_weight must be >= 0, got {title_weight}")
        self.k1, self.b, self.expansions, self.expansion_weight = k1, b, expansions, expansion_weight
        self.title_weight = title_weight

    def fit(self, catalog: Catalog, features: ProductFeatures | None = None) -> "BM25Retriever":
        docs = [product_document(p) for p in catalog.products]
        self.has_text = np.array([bool(d) for d in docs])
        self.model = _index(docs, self.k1, self.b)
        self.title = _index([p.title or "" for p in catalog.products], self.k1, self.b) if self.title_weight else None
        self.expansion = None
        if self.expansions is not None:
            if len(self.expansions) != len(catalog):
                raise ValueError(f"{len(self.expansions)} expansions for {len(catalog)} products")
            extra = [" ".join(e) for e in self.expansions]
            self.has_expansion = np.array([bool(e) for e in extra])
            self.expansion = _index(extra, self.k1, self.b) if self.has_expansion.any() else None
        return self

    def supports(self, queries: QueryBatch) -> bool:
        return queries.texts is not None

    def scores(self, queries: QueryBatch) -> np.ndarray:
        tokens = _tokenize(queries.texts, return_ids=False)
        out = _scores(self.model, tokens, len(self.has_text))
        visible = self.has_text
        if self.title_weight:
            if self.title is None:
                raise ValueError("title_weight > 0 on a BM25 fitted without a title field (title_weight 0 at fit)")
            out += self.title_weight * _scores(self.title, tokens, len(self.has_text))
        if self.expansion is not None and self.expansion_weight:
            out += self.expansion_weight * _scores(self.expansion, tokens, len(self.has_text))
            visible = visible | self.has_expansion
        out[:, ~visible] = -np.inf
        return out


def _index(docs: Sequence[str], k1: float, b: float):
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    model = bm25s.BM25(k1=k1, b=b)
    model.index(_tokenize([d or "_" for d in docs]), show_progress=False)
    return model


def _tokenize(texts: Sequence[str], **kwargs):
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", token_pattern=TOKEN_PATTERN, show_progress=False, **kwargs)


def _scores(model, tokens: Sequence[Sequence[str]], n: int) -> np.ndarray:
    return np.stack([model.get_scores(t) if t else np.zeros(n) for t in tokens]).astype(np.float32)
