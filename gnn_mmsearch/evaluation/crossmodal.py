"""Cross-modal retrieval: a product's title, embedded by the text query tower, must find that product among the
products that have an image, each embedded from images alone.

The item side is the model the run describes with every product's text masked out: the same fusion and the same
graph propagation (over the edge index it is given), so a product's vector carries its own image and its
neighbours' images, never any title. A model without the image modality has no image-only embedding: the metric
is absent for it (an empty dict), not zero.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch

from ..data.catalog import Product
from ..features import ProductFeatures
from .retrieval import evaluate_queries


@torch.no_grad()
def image_only_embeddings(model: torch.nn.Module, features: ProductFeatures, edge_index: torch.Tensor) -> torch.Tensor:
    """Product embeddings ``[N, d]`` with every text masked out (products without an image get the empty token)."""
    was_training = model.training
    model.eval()
    emb = model(features.image, features.image_mask, features.text, torch.zeros_like(features.text_mask), edge_index)
    model.train(was_training)
    return emb


def evaluate_title_to_image(model: torch.nn.Module, products: Sequence[Product], features: ProductFeatures,
                            edge_index: torch.Tensor, query_rows: Iterable[int], ks=(1, 5, 10)) -> dict[str, float]:
    """``recall/precision/ndcg/mrr@k`` of title queries for the products at ``query_rows`` that have an image and a
    title, ranked among all products with an image; empty when the model has no image modality, no product has an image
    (nothing is embedded then) or no row qualifies."""
    if "image" not in model.config.modalities or not features.image_mask.any():
        return {}
    return title_to_image(lambda titles: model.encode_query(text=titles), image_only_embeddings(model, features, edge_index),
                          products, features, query_rows, ks)


@torch.no_grad()
def title_to_image(embed_titles: Callable[[list[str]], torch.Tensor], items: torch.Tensor, products: Sequence[Product],
                   features: ProductFeatures, query_rows: Iterable[int], ks=(1, 5, 10)) -> dict[str, float]:
    """The metric for any model: ``embed_titles(titles) -> [Q, d]`` against ``items [N, d]``, the products'
    image-only embeddings (only products with an image are candidates)."""
    has_image = features.image_mask
    rows = [int(i) for i in query_rows if has_image[int(i)] and (products[int(i)].title or "").strip()]
    if not rows:
        return {}
    candidates = has_image.nonzero().flatten()
    position = torch.full((len(products),), -1, dtype=torch.long)
    position[candidates] = torch.arange(candidates.numel())
    return evaluate_queries(embed_titles([products[i].title for i in rows]), position[rows], items[candidates], ks)
