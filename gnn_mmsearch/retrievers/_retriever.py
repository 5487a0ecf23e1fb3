"""The retriever interface and registry.

``RETRIEVERS.create(name, **options).fit(catalog, features)`` then ``scores(QueryBatch) -> float32 [Q, N]`` over
the catalog's products (``-inf``: the retriever cannot see that product, e.g. BM25 and a product without text). A
retriever that cannot answer a kind of query (BM25 and an image) says so with ``supports``. Register one with
``@RETRIEVERS.register(name)``; it is built as ``cls(**options)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .._registry import Registry
from ..data.catalog import Catalog
from ..features import ProductFeatures

if TYPE_CHECKING:
    from .copurchase import ProductScores

RETRIEVERS: Registry[type["Retriever"]] = Registry("retriever")


@dataclass
class QueryBatch:
    """Queries as the retrievers see them: their texts (for lexical retrievers) and raw pretrained features per
    modality (``{"text": [Q, 384], "image": [Q, 1280]}``, from ``encoder.query_features``)."""

    texts: Sequence[str] | None = None
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(next(iter(self.features.values())))

    def take(self, rows: slice) -> "QueryBatch":
        """The queries at ``rows``."""
        return QueryBatch(self.texts[rows] if self.texts is not None else None,
                          {m: f[rows] for m, f in self.features.items()})


class Retriever:
    def fit(self, catalog: Catalog, features: ProductFeatures) -> "Retriever":
        raise NotImplementedError

    def supports(self, queries: QueryBatch) -> bool:
        raise NotImplementedError

    def scores(self, queries: QueryBatch) -> np.ndarray:
        raise NotImplementedError

    def product_scores(self) -> "ProductScores | None":
        """How it scores every product for product queries, ``(query rows, visible co-purchase graph) -> [Q, N]``
        (``None``: it cannot answer them)."""
        return None
