"""The training loop on a tiny synthetic catalog, with seeded random features standing in for the extractors."""
from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch_geometric.utils import subgraph

from gnn_mmsearch.data import SyntheticConfig, generate, split_edges, split_products
from gnn_mmsearch.features import ProductFeatures
from gnn_mmsearch.models import EncoderConfig, MultimodalGraphEncoder
from gnn_mmsearch.training import TrainConfig, Trainer
from gnn_mmsearch.training.sampling import NeighborSampler

IMAGE_DIM, TEXT_DIM = 24, 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Two shared cores: one intra-op thread avoids oversubscription (and keeps runs repeatable)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return generate(SyntheticConfig(num_products=120, num_users=5, image_size=16, seed=0),
                    tmp_path_factory.mktemp("trainer"))


@pytest.fixture(scope="module")
def features(catalog) -> ProductFeatures:
    """Random features that still carry the hidden collection (so there is something to learn)."""
    g = torch.Generator().manual_seed(0)
    n = len(catalog)
    collection = torch.tensor(catalog.meta["ground_truth"]["collection"])
    centres_i = torch.randn(int(collection.max()) + 1, IMAGE_DIM, generator=g)
    centres_t = torch.randn(int(collection.max()) + 1, TEXT_DIM, generator=g)
    image_mask = torch.tensor([p.image_path is not None for p in catalog.products])
    text_mask = torch.tensor([p.text() is not None for p in catalog.products])
    image = (centres_i[collection] + torch.randn(n, IMAGE_DIM, generator=g)) * image_mask[:, None]
    text = (centres_t[collection] + torch.randn(n, TEXT_DIM, generator=g)) * text_mask[:, None]
    return ProductFeatures(image=image, image_mask=image_mask, text=text, text_mask=text_mask)


def _fit(catalog, features, seed: int = 0, callback=None, **train_kwargs):
    torch.manual_seed(seed)  # model initialisation and dropout
    split = split_edges(catalog, seed=seed)
    holdout = split_products(len(catalog), 0.1, seed)
    model = MultimodalGraphEncoder(EncoderConfig(image_dim=IMAGE_DIM, text_dim=TEXT_DIM, hidden_dim=32, out_dim=16))
    cfg = TrainConfig(**{"max_epochs": 6, "batch_size": 64, "num_negatives": 32, "patience": 100, **train_kwargs})
    trainer = Trainer(model, features, split, holdout, cfg, seed=seed, on_epoch_end=callback)
    return trainer, trainer.fit()


def test_fit_records_history(catalog, features):
    rows = []
    trainer, history = _fit(catalog, features, callback=rows.append)
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert rows == history
    for row in history:
        assert {"epoch", "train/loss", "val/recall@10", "val/recall@20", "val/ndcg@10", "val/mrr@10"} <= set(row)
        assert math.isfinite(row["train/loss"]) and row["train/loss"] > 0
        assert all(0.0 <= v <= 1.0 for k, v in row.items() if k.startswith("val/"))
    assert not trainer.model.training
    assert history[-1]["train/loss"] < history[0]["train/loss"]


def test_fit_restores_the_best_weights(catalog, features):
    """A high learning rate makes validation go up and down; the weights of the best epoch are kept."""
    snapshots = {}

    def keep(row):  # called right after the epoch's validation, i.e. with that epoch's weights
        snapshots[row["epoch"]] = copy.deepcopy(trainer.model.state_dict())

    torch.manual_seed(0)
    split = split_edges(catalog, seed=0)
    model = MultimodalGraphEncoder(EncoderConfig(image_dim=IMAGE_DIM, text_dim=TEXT_DIM, hidden_dim=32, out_dim=16))
    trainer = Trainer(model, features, split, split_products(len(catalog), 0.1, 0),
                      TrainConfig(max_epochs=8, lr=0.05, batch_size=64, num_negatives=32, patience=100),
                      seed=0, on_epoch_end=keep)
    history = trainer.fit()
    scores = [r["val/recall@10"] for r in history]
    best_epoch = history[scores.index(max(scores))]["epoch"]  # the first epoch reaching the best score
    final = trainer.model.state_dict()
    for name, value in snapshots[best_epoch].items():
        torch.testing.assert_close(final[name], value, rtol=0, atol=0, msg=name)
    assert trainer.validate()["val/recall@10"] == pytest.approx(max(scores))
    assert best_epoch != history[-1]["epoch"], "precondition: a later epoch scored worse than the best"
    assert any(not torch.equal(final[k], v) for k, v in snapshots[history[-1]["epoch"]].items())


def test_early_stopping_after_patience_epochs_without_improvement(catalog, features):
    # lr=0: the weights never change, so validation never improves after the first epoch
    _, history = _fit(catalog, features, lr=0.0, patience=2, max_epochs=20)
    assert len(history) == 3
    assert len({r["val/recall@10"] for r in history}) == 1


def test_same_seed_same_history(catalog, features):
    _, first = _fit(catalog, features, seed=0)
    _, second = _fit(catalog, features, seed=0)
    assert first == second
    _, other = _fit(catalog, features, seed=1)
    assert [r["train/loss"] for r in other] != [r["train/loss"] for r in first]


def test_validation_graph_hides_val_links(catalog, features):
    """What the trainer validates on is the val-stage graph: no val link reaches the encoder."""
    trainer, _ = _fit(catalog, features, max_epochs=1)
    graph = trainer.split.message_passing("val")
    seen = {(a, b) for a, b in graph.t().tolist()}
    assert not any((a, b) in seen or (b, a) in seen for a, b in trainer.split.val.t().tolist())


def test_alignment_pool_skips_products_without_the_modality_and_held_out_products(catalog, features):
    trainer, _ = _fit(catalog, features, max_epochs=1)
    holdout = split_products(len(catalog), 0.1, 0)
    for modality, pool in trainer.align_pool.items():
        mask = getattr(features, f"{modality}_mask")
        assert mask[pool].all() and not holdout[pool].any()
        assert pool.numel() == int((mask & ~holdout).sum())


def test_neighbor_batching_trains_and_improves_validation(catalog, features):
    trainer, history = _fit(catalog, features, batching="neighbor", num_neighbors=[5, 5], max_epochs=8)
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    torch.manual_seed(0)
    untrained = Trainer(MultimodalGraphEncoder(EncoderConfig(image_dim=IMAGE_DIM, text_dim=TEXT_DIM, hidden_dim=32,
                                                             out_dim=16)),
                        features, trainer.split, split_products(len(catalog), 0.1, 0), trainer.config)
    assert max(r["val/recall@10"] for r in history) > untrained.validate()["val/recall@10"] + 0.05


def test_neighbor_batching_propagates_only_the_sampled_subgraph(catalog, features, monkeypatch):
    """Each step embeds a subgraph: fewer products than the catalog, edges from the epoch's training graph only
    (no val/test link, no target link of the epoch), and every endpoint of the step's links inside it."""
    seen = []
    original = NeighborSampler.sample

    def sample(self, seeds, generator=None):
        nodes, edge_index = original(self, seeds, generator)
        seen.append((self.edge_index, seeds, nodes, edge_index))
        return nodes, edge_index

    monkeypatch.setattr(NeighborSampler, "sample", sample)
    trainer, _ = _fit(catalog, features, batching="neighbor", num_neighbors=[2, 1], max_epochs=2, batch_size=8,
                      num_negatives=4)
    split = trainer.split
    held_out = {tuple(sorted(p)) for p in torch.cat([split.val, split.test], 1).t().tolist()}
    train_graph = {tuple(p) for p in split.message_passing("train").t().tolist()}
    assert seen
    for graph, seeds, nodes, edge_index in seen:
        epoch_graph = {tuple(p) for p in graph.t().tolist()}
        targets = {tuple(sorted(p)) for p in train_graph - epoch_graph}
        assert targets, "the epoch's target links are removed from its graph"
        links = {tuple(sorted(p)) for p in nodes[edge_index].t().tolist()}
        assert links <= {tuple(sorted(p)) for p in epoch_graph}
        assert not links & held_out and not links & targets
        assert torch.isin(seeds, nodes).all() and nodes.numel() < len(catalog)


def test_neighbor_sampler_fan_out():
    # a star: 0 is linked to 1..6, 6 to 7; undirected
    pairs = torch.tensor([[0, 0, 0, 0, 0, 0, 6], [1, 2, 3, 4, 5, 6, 7]])
    edge_index = torch.cat([pairs, pairs.flip(0)], 1)
    sampler = NeighborSampler(edge_index, 9, [2])
    nodes, sub = sampler.sample(torch.tensor([0]), torch.Generator().manual_seed(0))
    assert nodes.numel() == 3 and nodes[0] == 0 and set(nodes.tolist()) <= set(range(7))
    assert sub.size(1) == 4 and (sub[0] != sub[1]).all()  # the two sampled links, both directions
    nodes, sub = NeighborSampler(edge_index, 9, [-1, -1]).sample(torch.tensor([1]))
    assert nodes.tolist() == list(range(7)) and sub.size(1) == 12  # 2 hops from 1: not 7; 8 is isolated


@pytest.mark.parametrize("seed", range(3))
def test_neighbor_sampler_subgraph_is_pygs_induced_subgraph(seed):
    """The subgraph read off the CSR is PyG's ``subgraph`` of the sampled nodes: same links, same order (so a step
    propagates exactly what it did when every step scanned all links)."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randint(0, 200, (2, 600), generator=g)
    pairs = pairs[:, pairs[0] != pairs[1]]
    edge_index = torch.cat([pairs, pairs.flip(0)], 1)[:, torch.randperm(2 * pairs.size(1), generator=g)]
    sampler = NeighborSampler(edge_index, 210, [3, 2])
    for _ in range(5):
        nodes, sub = sampler.sample(torch.randint(0, 210, (8,), generator=g), g)
        expected, _ = subgraph(nodes, edge_index, relabel_nodes=True, num_nodes=210)
        assert torch.equal(sub, expected)


@pytest.mark.parametrize("kwargs, message", [
    ({"batching": "mini"}, "train.batching must be full|neighbor, got 'mini'"),
    ({"num_neighbors": [10, 0]}, "train.num_neighbors must be fan-outs >= 1 (or -1: all), got [10, 0]"),
])
def test_bad_batching_config(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**kwargs)


def test_neighbor_batching_needs_one_fan_out_per_layer(catalog, features):
    with pytest.raises(ValueError, match=re.escape("train.num_neighbors needs one fan-out per GNN layer "
                                                   "(model.gnn.layers=2), got [10]")):
        _fit(catalog, features, batching="neighbor", num_neighbors=[10])
