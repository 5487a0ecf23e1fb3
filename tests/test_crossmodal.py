"""Title -> image cross-modal retrieval: image-only item embeddings, exact values on a hand-made case, the absent
case (text-only model) and its place in a run's metrics."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gnn_mmsearch.data import Product
from gnn_mmsearch.evaluation import evaluate_title_to_image, image_only_embeddings
from gnn_mmsearch.features import ProductFeatures
from gnn_mmsearch.models import EncoderConfig, MultimodalGraphEncoder

KEYS = {f"{m}@{k}" for m in ("recall", "precision", "ndcg", "mrr") for k in (1, 5, 10)}


class HashedText:
    """A stand-in text extractor: a fixed random vector per string (words as tokens)."""

    max_tokens = 256

    def token_counts(self, texts):
        return [len(t.split()) for t in texts]

    def encode(self, texts, progress=False):
        vecs = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(8) for t in texts]
        return np.stack(vecs).astype(np.float32), np.ones(len(texts), dtype=bool)


class LookupModel(torch.nn.Module):
    """Items: their image feature plus, where the text mask is set, their text feature; queries: looked up by title."""

    def __init__(self, modalities, queries: dict[str, list[float]]):
        super().__init__()
        self.config = EncoderConfig(image_dim=5, text_dim=5, modalities=modalities)
        self.queries = queries

    def forward(self, image, image_mask, text, text_mask, edge_index=None):
        return F.normalize(image * image_mask[:, None] + text * text_mask[:, None], dim=-1)

    def encode_query(self, text):
        return F.normalize(torch.tensor([self.queries[t] for t in text]), dim=-1)


def _features(num: int, with_image: list[int], image: torch.Tensor, text: torch.Tensor) -> ProductFeatures:
    image_mask = torch.zeros(num, dtype=torch.bool)
    image_mask[with_image] = True
    return ProductFeatures(image * image_mask[:, None], image_mask, text, torch.ones(num, dtype=torch.bool))


def test_title_to_image_on_a_hand_made_case():
    """Products 0, 1, 3 have an image (one-hot e0, e1, e3); product 1's text is e4, which must not reach the items.

    Query rows 0, 1, 2: product 2 has no image, so two queries. Title 0 -> e0: rank 1. Title 1 -> some e1, more e3
    and much e4: product 3 then product 1 (rank 2); were texts not masked, product 1 would come first.
    """
    products = [Product(id=f"P{i}", title=f"title {i}") for i in range(5)]
    text = torch.zeros(5, 5)
    text[1, 4] = 1.0
    feats = _features(5, [0, 1, 3], torch.eye(5), text)
    model = LookupModel(["image", "text"], {"title 0": [1, 0, 0, 0, 0], "title 1": [0, 0.3, 0, 0.6, 2.0]})
    got = evaluate_title_to_image(model, products, feats, torch.empty(2, 0, dtype=torch.long), [0, 1, 2], ks=(1, 2))
    assert got["recall@1"] == pytest.approx(0.5) and got["recall@2"] == pytest.approx(1.0)
    assert got["mrr@2"] == pytest.approx(0.75)


def test_title_to_image_is_absent_for_a_text_only_model():
    products = [Product(id=f"P{i}", title=f"title {i}") for i in range(3)]
    feats = _features(3, [0, 1, 2], torch.eye(3, 5), torch.eye(3, 5))
    model = LookupModel(["text"], {f"title {i}": [1.0, 0, 0, 0, 0] for i in range(3)})
    assert evaluate_title_to_image(model, products, feats, torch.empty(2, 0, dtype=torch.long), [0, 1, 2]) == {}


def test_title_to_image_without_qualifying_queries_is_absent():
    products = [Product(id="P0", title="title 0"), Product(id="P1", title=None), Product(id="P2", title="title 2")]
    feats = _features(3, [0, 1], torch.eye(3, 5), torch.eye(3, 5))
    model = LookupModel(["image", "text"], {})
    assert evaluate_title_to_image(model, products, feats, torch.empty(2, 0, dtype=torch.long), [1, 2]) == {}


def test_title_to_image_on_an_image_less_catalog_embeds_nothing():
    """No product has an image (e.g. a large catalog generated without them): absent, and no graph forward is run."""
    products = [Product(id=f"P{i}", title=f"title {i}") for i in range(3)]
    feats = _features(3, [], torch.eye(3, 5), torch.eye(3, 5))
    model = LookupModel(["image", "text"], {f"title {i}": [1.0, 0, 0, 0, 0] for i in range(3)})
    model.forward = lambda *args: pytest.fail("an image-less catalog needs no image-only embeddings")
    assert evaluate_title_to_image(model, products, feats, torch.empty(2, 0, dtype=torch.long), [0, 1, 2]) == {}


@pytest.fixture()
def encoder() -> MultimodalGraphEncoder:
    torch.manual_seed(0)
    model = MultimodalGraphEncoder(image_dim=12, text_dim=8, gnn_layers=2).eval()
    model.set_feature_extractors(text=HashedText())
    return model


def _random_features(num: int = 30) -> ProductFeatures:
    g = torch.Generator().manual_seed(1)
    image_mask = torch.arange(num) % 3 != 0
    return ProductFeatures(torch.randn(num, 12, generator=g) * image_mask[:, None], image_mask,
                           torch.randn(num, 8, generator=g), torch.ones(num, dtype=torch.bool))


def test_image_only_embeddings_ignore_text_and_propagate_over_the_graph(encoder):
    feats = _random_features()
    edges = torch.tensor([[i for i in range(29)] + [i + 1 for i in range(29)],
                          [i + 1 for i in range(29)] + [i for i in range(29)]])
    emb = image_only_embeddings(encoder, feats, edges)
    other_text = ProductFeatures(feats.image, feats.image_mask, torch.randn(30, 8), feats.text_mask)
    assert torch.allclose(emb, image_only_embeddings(encoder, other_text, edges))
    assert not torch.allclose(emb, image_only_embeddings(encoder, feats, torch.empty(2, 0, dtype=torch.long)))
    assert not torch.allclose(emb, encoder(feats.image, feats.image_mask, feats.text, feats.text_mask, edges))


def test_title_to_image_with_the_real_encoder(encoder):
    products = [Product(id=f"P{i}", title=f"product number {i}") for i in range(30)]
    got = evaluate_title_to_image(encoder, products, _random_features(), torch.empty(2, 0, dtype=torch.long),
                                  range(30))
    assert set(got) == KEYS and all(0.0 <= v <= 1.0 for v in got.values())
    assert got["recall@1"] <= got["recall@5"] <= got["recall@10"]


def test_a_run_with_images_reports_crossmodal_metrics(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {f"crossmodal/{k}" for k in KEYS} <= set(metrics)
