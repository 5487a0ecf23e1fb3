"""Fusion layers, graph propagation, the encoder (forward, query tower, persistence) and the InfoNCE loss."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from torch_geometric.utils import to_torch_csr_tensor as to_csr, to_undirected

from gnn_mmsearch.layers import CONVS, FUSIONS, GraphPropagation
from gnn_mmsearch.losses import InfoNCELoss
from gnn_mmsearch.models import EncoderConfig, MultimodalGraphEncoder

H = 32
FUSION_NAMES = ["concat", "weighted", "attention"]
CONV_NAMES = ["lightgcn", "gcn", "sage", "gat"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tokens(n: int = 6, m: int = 2) -> torch.Tensor:
    return torch.randn(n, m, H, generator=torch.Generator().manual_seed(1))


MASK = torch.tensor([[True, True], [True, False], [False, True], [False, False], [True, True], [False, False]])


def _small_encoder(**kwargs) -> MultimodalGraphEncoder:
    cfg = dict(image_dim=20, text_dim=12, hidden_dim=H, out_dim=8)
    cfg.update(kwargs)
    return MultimodalGraphEncoder(EncoderConfig(**cfg)).eval()


def _features(n: int = 10, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    image, text = torch.randn(n, 20, generator=g), torch.randn(n, 12, generator=g)
    image_mask = torch.tensor([True, False, True, True, False, True, True, False, True, True])[:n]
    text_mask = torch.tensor([True, True, False, True, False, True, False, True, True, True])[:n]
    return image, image_mask, text, text_mask


RING = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 6, 7], [1, 0, 2, 1, 3, 2, 4, 3, 7, 6]])


# ------------------------------------------------------------------------------------------- fusion
def test_fusion_registry():
    assert set(FUSION_NAMES) <= set(FUSIONS.names())
    with pytest.raises(ValueError, match="unknown fusion"):
        FUSIONS.create("nope", 2, H)
    with pytest.raises(ValueError, match="fusion 'attention' takes no option 'heads'"):
        FUSIONS.create("attention", 2, H, heads=2)
    assert FUSIONS.create("attention", 2, H, num_heads=2).attn.num_heads == 2


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_fusion_output_shape(name):
    fusion = FUSIONS.create(name, 2, H).eval()
    out = fusion(_tokens(), MASK)
    assert out.shape == (6, H) and torch.isfinite(out).all()
    assert fusion.last_weights.shape == (6, 2)
    # weights of absent modalities are zero
    assert (fusion.last_weights[~MASK] == 0).all()


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_fusion_ignores_masked_out_modalities(name):
    fusion = FUSIONS.create(name, 2, H).eval()
    tokens = _tokens()
    changed = tokens.clone()
    changed[~MASK] = torch.randn(int((~MASK).sum()), H) * 100  # garbage where the modality is absent
    torch.testing.assert_close(fusion(changed, MASK), fusion(tokens, MASK))
    # ... while a present modality does matter
    changed_present = tokens.clone()
    changed_present[0, 0] += 5.0
    assert not torch.allclose(fusion(changed_present, MASK)[0], fusion(tokens, MASK)[0])


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_fusion_rows_without_any_modality_get_the_empty_token(name):
    fusion = FUSIONS.create(name, 2, H).eval()
    with torch.no_grad():
        fusion.empty.copy_(torch.linspace(-1, 1, H))
    out = fusion(_tokens(), MASK)
    empty_rows = ~MASK.any(1)
    assert empty_rows.sum() == 2
    assert torch.isfinite(out).all()
    for row in out[empty_rows]:
        torch.testing.assert_close(row, fusion.empty.detach())
    assert not torch.allclose(out[0], fusion.empty.detach())


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_fusion_gradients_are_finite_with_empty_rows(name):
    """A row with no modality must not poison training with NaN gradients (softmax over nothing)."""
    fusion = FUSIONS.create(name, 2, H)
    tokens = _tokens().requires_grad_()
    fusion(tokens, MASK).sum().backward()
    assert torch.isfinite(tokens.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)
    assert fusion.empty.grad is not None and fusion.empty.grad.abs().sum() > 0


# -------------------------------------------------------------------------------------------- graph
def test_graph_propagation_with_zero_layers_is_identity():
    x = torch.randn(8, H)
    prop = GraphPropagation(H, 0)
    assert len(prop.convs) == 0
    torch.testing.assert_close(prop(x, RING), x)


@pytest.mark.parametrize("conv", CONV_NAMES)
def test_graph_propagation_depends_on_edges(conv):
    assert conv in CONVS
    prop = GraphPropagation(H, 2, conv).eval()
    x = torch.randn(8, H)
    with_edges = prop(x, RING)
    without = prop(x, torch.empty(2, 0, dtype=torch.long))
    assert with_edges.shape == (8, H) and torch.isfinite(with_edges).all() and torch.isfinite(without).all()
    connected = torch.unique(RING)
    assert not torch.allclose(with_edges[connected], without[connected])
    # node 5 is isolated in RING: only its own features reach it
    torch.testing.assert_close(with_edges[5], without[5])


def test_lightgcn_has_no_weights_and_averages_layers():
    prop = GraphPropagation(H, 1, "lightgcn")
    assert sum(p.numel() for p in prop.parameters()) == 0
    x = torch.randn(2, H)
    edges = torch.tensor([[0, 1], [1, 0]])
    # two nodes joined by one edge: the normalised neighbour average of node 0 is node 1 -> mean(x0, x1)
    torch.testing.assert_close(prop(x, edges), (x + x.flip(0)) / 2)


@pytest.mark.parametrize("conv", ["lightgcn", "sage"])
def test_large_graph_inference_propagates_through_a_sparse_adjacency(conv, monkeypatch):
    import gnn_mmsearch.layers.graph as graph

    prop = GraphPropagation(H, 2, conv).eval()
    x, edges = torch.randn(40, H), to_undirected(torch.randint(0, 40, (2, 200)))  # as Catalog.to_pyg gives
    with torch.no_grad():
        messages = prop(x, edges)
        monkeypatch.setattr(graph, "SPARSE_MESSAGES", 0)
        calls = []
        monkeypatch.setattr(graph, "to_torch_csr_tensor", lambda *a, **k: calls.append(1) or to_csr(*a, **k))
        sparse = prop(x, edges)
    assert calls == [1]
    torch.testing.assert_close(sparse, messages, atol=1e-5, rtol=1e-5)
    calls.clear()
    prop(x, edges).sum().backward() if any(p.requires_grad for p in prop.parameters()) else prop(x, edges)
    assert calls == []  # training keeps the edge index


def test_unknown_conv_is_rejected():
    with pytest.raises(ValueError, match="unknown conv"):
        GraphPropagation(H, 1, "transformer")


# ------------------------------------------------------------------------------------------ encoder
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("conv", ["lightgcn", "gcn"])
def test_encoder_output_is_unit_norm(fusion, conv):
    model = _small_encoder(fusion=fusion, conv=conv)
    out = model(*_features(), RING)
    assert out.shape == (10, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(10))


def test_encoder_without_edge_index_is_content_only():
    model = _small_encoder(gnn_layers=0)
    feats = _features()
    torch.testing.assert_close(model(*feats), model(*feats, RING))
    graph_model = _small_encoder(gnn_layers=2)
    assert not torch.allclose(graph_model(*feats)[:5], graph_model(*feats, RING)[:5])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_encoder_ignores_features_of_missing_modalities(fusion):
    model = _small_encoder(fusion=fusion)
    image, image_mask, text, text_mask = _features()
    out = model(image, image_mask, text, text_mask, RING)
    image2, text2 = image.clone(), text.clone()
    image2[~image_mask] = 1e3
    text2[~text_mask] = -1e3
    torch.testing.assert_close(model(image2, image_mask, text2, text_mask, RING), out)


def test_encoder_modalities_switch_a_modality_off():
    model = _small_encoder(modalities=["text"])
    image, image_mask, text, text_mask = _features()
    out = model(image, image_mask, text, text_mask)
    torch.testing.assert_close(model(torch.randn_like(image), image_mask, text, text_mask), out)
    assert not torch.allclose(model(image, image_mask, torch.randn_like(text), text_mask)[text_mask], out[text_mask])


def test_embed_query_features_text_image_and_both():
    model = _small_encoder()
    image, _, text, _ = _features(4)
    for kwargs in ({"text": text}, {"image": image}, {"text": text, "image": image}):
        q = model.embed_query_features(**kwargs)
        assert q.shape == (4, 8)
        torch.testing.assert_close(q.norm(dim=1), torch.ones(4))
    only_text, only_image = model.embed_query_features(text=text), model.embed_query_features(image=image)
    torch.testing.assert_close(model.embed_query_features(text=text, image=image),
                               F.normalize(only_text + only_image, dim=-1))
    with pytest.raises(ValueError, match="text and/or image"):
        model.embed_query_features()


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    model = _small_encoder(fusion="concat", conv="sage", gnn_layers=1, features={"text": {"model_name": "x"}})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # differ from any fresh initialisation
    directory = model.save_pretrained(tmp_path / "enc")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((directory / "config.json").read_text())["conv"] == "sage"
    loaded = MultimodalGraphEncoder.from_pretrained(directory)
    assert not loaded.training and loaded.config == model.config
    feats = _features()
    torch.testing.assert_close(loaded(*feats, RING), model(*feats, RING), rtol=0, atol=0)
    image, _, text, _ = feats
    torch.testing.assert_close(loaded.embed_query_features(text=text, image=image),
                               model.embed_query_features(text=text, image=image), rtol=0, atol=0)


def test_from_pretrained_without_config_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        MultimodalGraphEncoder.from_pretrained(tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    ({"fusion": "sum"}, "unknown fusion"),
    ({"conv": "gin"}, "unknown conv"),
    ({"modalities": ["image", "audio"]}, "modalities"),
    ({"modalities": []}, "modalities"),
])
def test_unknown_options_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _small_encoder(**kwargs)


# --------------------------------------------------------------------------------------------- loss
def test_infonce_is_lower_for_aligned_than_for_shuffled_pairs():
    g = torch.Generator().manual_seed(0)
    anchor = F.normalize(torch.randn(16, 8, generator=g), dim=-1)
    positive = F.normalize(anchor + 0.1 * torch.randn(16, 8, generator=g), dim=-1)
    negatives = F.normalize(torch.randn(32, 8, generator=g), dim=-1)
    for loss in (InfoNCELoss(0.1), InfoNCELoss(0.1, symmetric=False)):
        aligned = loss(anchor, positive, negatives)
        shuffled = loss(anchor, positive[torch.randperm(16, generator=g)], negatives)
        assert aligned < shuffled
        assert loss(anchor, positive) < loss(anchor, positive.roll(1, 0))


def test_infonce_value_on_orthonormal_pairs():
    """Anchors = positives = the 4 unit vectors: each logit row is ``[1/t, 0, 0, 0]`` (rolled)."""
    e = torch.eye(4)
    t = 0.5
    expected = -torch.log(torch.exp(torch.tensor(1 / t)) / (torch.exp(torch.tensor(1 / t)) + 3))
    torch.testing.assert_close(InfoNCELoss(t)(e, e), expected)
    torch.testing.assert_close(InfoNCELoss(t, symmetric=False)(e, e), expected)
    # one extra negative equal to an anchor adds one more e^{1/t} term for that anchor (and its positive)
    with_neg = InfoNCELoss(t, symmetric=False)(e, e, e[:1])
    expected_first = -torch.log(torch.exp(torch.tensor(1 / t)) / (2 * torch.exp(torch.tensor(1 / t)) + 3))
    expected_rest = -torch.log(torch.exp(torch.tensor(1 / t)) / (torch.exp(torch.tensor(1 / t)) + 4))
    torch.testing.assert_close(with_neg, (expected_first + 3 * expected_rest) / 4)


@pytest.mark.parametrize("fusion", ["attention", "concat", "weighted"])
def test_a_modality_no_product_has_is_not_projected_and_changes_nothing(fusion):
    """An image-less catalog (one zero row expanded to N) skips the image projection; the embeddings are those the
    projection would give, since the fusion ignores masked tokens."""
    model = _small_encoder(fusion=fusion)
    _, _, text, text_mask = _features()
    image, no_image = torch.zeros(1, 20).expand(10, -1), torch.zeros(10, dtype=torch.bool)
    calls = []
    model.proj["image"].register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        got = model(image, no_image, text, text_mask, RING)
        assert not calls
        tokens = torch.stack([model.proj["image"](image), model.proj["text"](text)], dim=1)
        h = model.gnn(model.fusion(tokens, torch.stack([no_image, text_mask], 1)), RING)
    torch.testing.assert_close(got, F.normalize(model.head(h), dim=-1))


def test_inference_fuses_large_catalogs_a_block_of_rows_at_a_time(monkeypatch):
    """Without gradients, products are projected and fused in blocks of ``FUSE_ROWS`` rows: same embeddings, same
    modality weights, only the graph propagation sees every product at once."""
    import gnn_mmsearch.models.encoder as encoder

    model = _small_encoder()
    with torch.no_grad():
        whole = model(*_features(), RING)
        weights = model.fusion.last_weights
        monkeypatch.setattr(encoder, "FUSE_ROWS", 3)
        calls = []
        model.fusion.register_forward_hook(lambda module, args, out: calls.append(args[0].size(0)))
        torch.testing.assert_close(model(*_features(), RING), whole)
    assert calls == [3, 3, 3, 1]
    torch.testing.assert_close(model.fusion.last_weights, weights)
