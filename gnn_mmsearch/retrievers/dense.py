"""Cosine kNN over the raw pretrained features (MiniLM text, EfficientNet image, or both concatenated): the
encoder's own inputs, untrained. A product without the feature scores ``-inf``."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.catalog import MODALITIES, Catalog
from ..features import ProductFeatures
from ._retriever import RETRIEVERS, QueryBatch, Retriever
from .copurchase import CopurchaseWeights, ProductScores


def raw_embeddings(features: ProductFeatures, modalities: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, sum d]`` concatenated unit-normalised raw features of ``modalities`` (zeros where missing) and the
    mask of products that have any of them."""
    parts = [F.normalize(getattr(features, m).float(), dim=-1) * getattr(features, f"{m}_mask")[:, None]
             for m in modalities]
    mask = torch.stack([getattr(features, f"{m}_mask") for m in modalities]).any(0)
    return torch.cat(parts, dim=1), mask


@RETRIEVERS.register("raw")
class RawFeatureRetriever(Retriever):
    """``modalities``: the raw features compared, e.g. ``[text]``; a query brings the same ones (unit-normalised
    and concatenated, so each modality weighs the same)."""

    def __init__(self, modalities: Sequence[str] = ("text",)):
        if not modalities or set(modalities) - set(MODALITIES):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(modalities)}")
        self.modalities = [m for m in MODALITIES if m in modalities]

    def fit(self, catalog: Catalog, features: ProductFeatures) -> "RawFeatureRetriever":
        self.items, self.mask = raw_embeddings(features, self.modalities)
        return self

    def supports(self, queries: QueryBatch) -> bool:
        return all(m in queries.features for m in self.modalities)

    def product_scores(self) -> ProductScores:
        return CopurchaseWeights().scores(self.items)

    def scores(self, queries: QueryBatch) -> np.ndarray:
        q = torch.cat([F.normalize(queries.features[m].float(), dim=-1) for m in self.modalities], dim=1)
        out = (q @ self.items.t()).numpy().astype(np.float32)
        out[:, ~self.mask.numpy()] = -np.inf
        return out
