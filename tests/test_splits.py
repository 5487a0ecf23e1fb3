"""Leak-free link and product splits."""
from __future__ import annotations

import pytest
import torch

from gnn_mmsearch.data import Catalog, Edge, Product, SyntheticConfig, generate, split_edges, split_products


def _pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    """Undirected pairs as ``(min, max)``."""
    return {(min(a, b), max(a, b)) for a, b in edge_index.t().tolist()}


def _directed(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(a, b) for a, b in edge_index.t().tolist()}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    return generate(SyntheticConfig(num_products=150, num_users=5, image_size=16, seed=0),
                    tmp_path_factory.mktemp("splits"))


@pytest.fixture(scope="module")
def split(catalog):
    return split_edges(catalog, "also_buy", ("also_buy", "bought_together"), val_ratio=0.15, test_ratio=0.15, seed=0)


def test_train_val_test_are_disjoint_and_cover_the_target_links(catalog, split):
    train, val, test = _pairs(split.train), _pairs(split.val), _pairs(split.test)
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)
    # each undirected also_buy pair exactly once over the three parts
    assert len(train) + len(val) + len(test) == split.train.size(1) + split.val.size(1) + split.test.size(1)
    assert train | val | test == _pairs(catalog.edge_index(["also_buy"]))
    total = len(train | val | test)
    assert split.val.size(1) == round(0.15 * total) and split.test.size(1) == round(0.15 * total)


def test_split_precondition_bought_together_duplicates_also_buy(catalog, split):
    """The leak checks below are only meaningful if held-out pairs also exist under another edge type."""
    together = _pairs(catalog.edge_index(["bought_together"]))
    assert together & _pairs(split.test) and together & _pairs(split.val)


def test_test_graph_has_no_test_pair_in_either_direction(catalog, split):
    graph = split.message_passing("test")
    directed = _directed(graph)
    for a, b in split.test.t().tolist():
        assert (a, b) not in directed and (b, a) not in directed
    # it is not empty: train and val links are still propagated at test time
    assert _pairs(split.train) <= _pairs(graph)
    assert _pairs(split.val) <= _pairs(graph)


@pytest.mark.parametrize("stage", ["train", "val"])
def test_train_and_val_graphs_hide_val_and_test_pairs(split, stage):
    graph = split.message_passing(stage)
    directed = _directed(graph)
    held_out = torch.cat([split.val, split.test], dim=1)
    for a, b in held_out.t().tolist():
        assert (a, b) not in directed and (b, a) not in directed
    assert _pairs(split.train) <= _pairs(graph)


@pytest.mark.parametrize("stage", ["train", "val", "test"])
def test_message_passing_graph_is_undirected(split, stage):
    directed = _directed(split.message_passing(stage))
    assert directed and all((b, a) in directed for a, b in directed)


def test_a_pair_held_out_under_one_type_is_hidden_under_every_type():
    """Hand-made: every also_buy pair is also a bought_together pair (written in the other direction)."""
    products = [Product(f"p{i}") for i in range(12)]
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12) if (i + j) % 3 == 0]
    edges = [Edge(f"p{i}", f"p{j}", "also_buy") for i, j in pairs]
    edges += [Edge(f"p{j}", f"p{i}", "bought_together") for i, j in pairs]
    split = split_edges(Catalog(products, edges), val_ratio=0.2, test_ratio=0.2, seed=1)
    assert split.test.size(1) > 0
    graph = _pairs(split.message_passing("test"))
    assert not graph & _pairs(split.test)
    assert graph == _pairs(split.train) | _pairs(split.val)
    assert _pairs(split.message_passing("train")) == _pairs(split.train)


def test_graph_types_other_than_target_are_propagated(catalog):
    split = split_edges(catalog, "also_buy", ("also_buy", "also_view"), seed=0)
    view_only = _pairs(catalog.edge_index(["also_view"])) - _pairs(catalog.edge_index(["also_buy"]))
    assert view_only and view_only <= _pairs(split.message_passing("test"))


def test_split_edges_is_deterministic_per_seed(catalog):
    a, b = split_edges(catalog, seed=5), split_edges(catalog, seed=5)
    assert torch.equal(a.test, b.test) and torch.equal(a.val, b.val) and torch.equal(a.train, b.train)
    assert not torch.equal(split_edges(catalog, seed=6).test, a.test)


def test_split_edges_without_target_links():
    split = split_edges(Catalog([Product("a"), Product("b")], [Edge("a", "b", "also_view")]))
    assert split.train.size(1) == split.val.size(1) == split.test.size(1) == 0
    assert split.message_passing("test").shape == (2, 0)


def test_split_products_is_deterministic_per_seed():
    a, b = split_products(200, 0.1, seed=3), split_products(200, 0.1, seed=3)
    assert a.dtype == torch.bool and a.shape == (200,)
    assert torch.equal(a, b) and int(a.sum()) == 20
    assert not torch.equal(a, split_products(200, 0.1, seed=4))
    assert int(split_products(10, 0.0, seed=0).sum()) == 0 and bool(split_products(10, 1.0, seed=0).all())
