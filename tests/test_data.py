"""Catalog data model, on-disk format and the synthetic generator."""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch_geometric.utils import is_undirected

from gnn_mmsearch.data import (CATALOG_SOURCES, EDGE_TYPES, Catalog, Edge, Interaction, Product, SyntheticConfig,
                               cached_catalog, generate, load_catalog, synthetic)

SMALL = dict(num_products=120, num_users=20, image_size=32)


def _products() -> list[Product]:
    return [
        Product("A", title="red leather wallet", description="A wallet.", brand="Acme",
                category=["Accessories", "Wallets"], price=19.5, rating=4.2, popularity=3.0,
                image_path="images/A.png"),
        Product("B", title="navy phone case", category=["Mobile", "Phone Cases"], price=9.0),
        Product("C", description="only a description, no title"),
        Product("D"),  # nothing but an id
    ]


def _edges() -> list[Edge]:
    return [Edge("A", "B", "also_buy"), Edge("B", "C", "also_view"), Edge("A", "B", "bought_together"),
            Edge("C", "D", "also_buy")]


@pytest.fixture
def catalog() -> Catalog:
    interactions = [Interaction("U1", "A", 10.0, 5.0), Interaction("U1", "C", 12.5, None)]
    return Catalog(_products(), _edges(), interactions, name="tiny", meta={"source": "test", "n": [1, 2]})


# ------------------------------------------------------------------------------------------ Product
def test_product_text_is_none_without_title_and_description():
    assert Product("x").text() is None
    assert Product("x", brand="Acme", category=["Mobile", "Phones"]).text() is None
    assert not Product("x", title="  ", description="").text()  # whitespace only: nothing to encode


def test_product_text_combines_fields():
    text = Product("x", title="red mug", brand="Acme", category=["Kitchen", "Mugs"], description="A mug.").text()
    assert text == "red mug. Acme. Kitchen > Mugs. A mug."
    assert Product("y", description="only words").text() == "only words"


def test_product_from_dict_normalises_fields():
    p = Product.from_dict({"id": 7, "price": "3.5", "rating": float("nan"), "category": None, "extra": "ignored"})
    assert p.id == "7" and p.price == 3.5 and p.rating is None and p.category == []
    with pytest.raises(ValueError):
        Product.from_dict({"title": "no id"})


# ------------------------------------------------------------------------------------------ Catalog
def test_duplicate_ids_bad_edges_and_unknown_interactions_are_dropped(caplog):
    products = _products() + [Product("A", title="a second A")]
    edges = _edges() + [Edge("A", "Z", "also_buy"), Edge("Z", "B", "also_view"), Edge("B", "B", "also_buy")]
    with caplog.at_level(logging.INFO, logger="gnn_mmsearch.data.catalog"):
        cat = Catalog(products, edges, [Interaction("U1", "A"), Interaction("U2", "missing")])
    assert cat.ids == ["A", "B", "C", "D"]
    assert cat.products[0].title == "red leather wallet"  # the first occurrence wins
    assert len(cat.edges) == len(_edges())
    assert all(e.src in cat.index_of and e.dst in cat.index_of and e.src != e.dst for e in cat.edges)
    assert [i.item for i in cat.interactions] == ["A"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "duplicate product id A" in messages and "3 edges dropped" in messages


def test_edge_index_filters_by_type(catalog):
    assert catalog.edge_index(["also_view"]).tolist() == [[1], [2]]
    assert catalog.edge_index().size(1) == 4
    assert catalog.edge_index(["no_such_type"]).shape == (2, 0)


def test_to_pyg_is_undirected_with_edge_types(catalog):
    data = catalog.to_pyg()
    assert data.num_nodes == 4
    assert is_undirected(data.edge_index, num_nodes=4)
    pairs = {(int(s), int(d)): EDGE_TYPES[int(t)] for (s, d), t in zip(data.edge_index.t(), data.edge_type)}
    # A-B is both also_buy and bought_together: one edge per direction, the first type in EDGE_TYPES wins
    assert pairs == {(0, 1): "also_buy", (1, 0): "also_buy", (1, 2): "also_view", (2, 1): "also_view",
                     (2, 3): "also_buy", (3, 2): "also_buy"}
    only_view = catalog.to_pyg(["also_view"])
    assert only_view.edge_index.tolist() == [[1, 2], [2, 1]]
    assert set(only_view.edge_type.tolist()) == {EDGE_TYPES.index("also_view")}


def test_image_file_resolves_against_root(catalog, tmp_path):
    assert catalog.image_file(catalog.products[1]) is None
    catalog.root = tmp_path
    assert catalog.image_file(catalog.products[0]) == tmp_path / "images" / "A.png"
    absolute = Product("E", image_path=str(tmp_path / "elsewhere.png"))
    assert catalog.image_file(absolute) == tmp_path / "elsewhere.png"


def test_save_load_round_trip(catalog, tmp_path):
    root = catalog.save(tmp_path / "cat")
    assert sorted(p.name for p in root.iterdir()) == ["catalog.json", "edges.tsv", "interactions.tsv",
                                                       "products.jsonl"]
    loaded = Catalog.load(root)
    assert loaded.name == "tiny" and loaded.root == root
    assert [asdict(p) for p in loaded.products] == [asdict(p) for p in catalog.products]
    assert [asdict(e) for e in loaded.edges] == [asdict(e) for e in catalog.edges]
    assert [asdict(i) for i in loaded.interactions] == [asdict(i) for i in catalog.interactions]
    assert loaded.meta == {"source": "test", "n": [1, 2]}
    assert loaded.fingerprint() == catalog.fingerprint()
    # image paths stay relative in the file and resolve against the directory it was loaded from
    first = json.loads((root / "products.jsonl").read_text().splitlines()[0])
    assert first["image_path"] == "images/A.png"
    assert loaded.image_file(loaded.products[0]) == root / "images" / "A.png"
    info = json.loads((root / "catalog.json").read_text())
    assert info["num_products"] == 4 and info["num_edges"] == 4 and info["edge_types"] == list(EDGE_TYPES)


def test_load_without_catalog_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a catalog directory"):
        Catalog.load(tmp_path)


def test_malformed_product_lines_are_skipped_and_counted(catalog, tmp_path, caplog):
    root = catalog.save(tmp_path / "cat")
    lines = (root / "products.jsonl").read_text().splitlines()
    bad = ['{"id": "broken", "title": ',          # truncated JSON
           '{"title": "no id at all"}',           # no id
           '{"id": "P", "price": "not a number"}',  # bad field value
           '[1, 2, 3]',                           # valid JSON, not an object
           'null',
           '{"id": "T", "title": 12345}',          # wrong types would crash feature extraction later
           '{"id": "U", "category": ["Mobile", 3]}',
           '{"id": "V", "description": ["a", "list"]}']
    (root / "products.jsonl").write_text("\n".join([lines[0], *bad, *lines[1:], ""]) + "\n")
    with caplog.at_level(logging.WARNING, logger="gnn_mmsearch.data.catalog"):
        loaded = Catalog.load(root)
    assert loaded.ids == catalog.ids
    assert len(loaded.edges) == len(catalog.edges)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "8 malformed product lines skipped" in messages
    assert sum("skipped" in m and "products.jsonl:" in m for m in messages) == 8
    assert all(p.text() is None or isinstance(p.text(), str) for p in loaded.products)
    assert any(m.startswith("products.jsonl:2 ") for m in messages)  # line numbers point at the bad line


def test_category_given_as_a_string_is_one_level(tmp_path):
    root = tmp_path / "cat"
    root.mkdir()
    (root / "catalog.json").write_text('{"name": "s"}')
    (root / "products.jsonl").write_text('{"id": "x", "category": "Phones"}\n')
    assert Catalog.load(root).products[0].category == ["Phones"]


def test_fingerprint_changes_with_content(catalog):
    other = Catalog(_products(), _edges()[:-1], catalog.interactions)
    assert other.fingerprint() != catalog.fingerprint()
    same = Catalog(_products(), _edges(), catalog.interactions, name="renamed")
    assert same.fingerprint() == catalog.fingerprint()


# ---------------------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory) -> Catalog:
    return generate(SyntheticConfig(**SMALL, seed=3), tmp_path_factory.mktemp("synthetic"))


def test_synthetic_catalog_has_the_documented_gaps_and_ground_truth(small_synthetic):
    cat = small_synthetic
    n = SMALL["num_products"]
    assert len(cat) == n
    assert any(p.image_path is None for p in cat.products)
    assert any(p.description is None for p in cat.products)
    with_image = [p for p in cat.products if p.image_path]
    assert all(cat.image_file(p).is_file() for p in with_image)
    from PIL import Image
    with Image.open(cat.image_file(with_image[0])) as img:
        assert img.size == (SMALL["image_size"], SMALL["image_size"])
    types = Counter(e.type for e in cat.edges)
    assert set(types) == set(EDGE_TYPES) and all(types.values())
    assert cat.interactions and {i.user for i in cat.interactions} <= {f"U{u:05d}" for u in range(SMALL["num_users"])}
    truth = cat.meta["ground_truth"]
    assert set(truth) == {"collection", "color", "pattern", "domain", "material"}
    assert all(f"made of {m} by" in p.description for p, m in zip(cat.products, truth["material"]) if p.description)
    assert all(len(v) == n for v in truth.values())
    # the domain in the ground truth is the first level of every product's category path
    assert all(p.category[0] == d.title() for p, d in zip(cat.products, truth["domain"]))
    assert cat.meta["config"]["seed"] == 3 and cat.meta["complements"]["Phones"]


def test_synthetic_same_seed_same_fingerprint(small_synthetic, tmp_path):
    again = generate(SyntheticConfig(**SMALL, seed=3), tmp_path / "again")
    assert again.fingerprint() == small_synthetic.fingerprint()
    first = small_synthetic.image_file(next(p for p in small_synthetic.products if p.image_path))
    assert (tmp_path / "again" / "images" / first.name).read_bytes() == first.read_bytes()
    other = generate(SyntheticConfig(**SMALL, seed=4), tmp_path / "other")
    assert other.fingerprint() != small_synthetic.fingerprint()


def test_synthetic_is_saved_in_the_on_disk_format(small_synthetic):
    loaded = Catalog.load(small_synthetic.root)
    assert loaded.fingerprint() == small_synthetic.fingerprint()
    assert loaded.meta["ground_truth"] == small_synthetic.meta["ground_truth"]


def test_cached_catalog_generates_once_then_loads(tmp_path, monkeypatch):
    cfg = SyntheticConfig(num_products=30, num_users=5, image_size=16, seed=1)
    first = cached_catalog(cfg, tmp_path)
    (root,) = [p for p in tmp_path.iterdir()]
    assert not root.name.endswith(".tmp") and (root / "catalog.json").exists()

    def must_not_generate(*args, **kwargs):
        raise AssertionError("generate() called although the catalog is on disk")

    monkeypatch.setattr(synthetic, "generate", must_not_generate)
    second = cached_catalog(cfg, tmp_path)
    assert second.fingerprint() == first.fingerprint() and second.root == root
    # another config gets its own directory (and would be generated)
    with pytest.raises(AssertionError, match="generate"):
        cached_catalog(SyntheticConfig(num_products=30, num_users=5, image_size=16, seed=2), tmp_path)


def test_a_failed_build_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    def broken(cfg, root):
        (root / "half-written").write_text("x")
        raise RuntimeError("killed")

    monkeypatch.setattr(synthetic, "generate", broken)
    with pytest.raises(RuntimeError, match="killed"):
        cached_catalog(SyntheticConfig(num_products=30, num_users=5, image_size=16), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_catalog_sources_registry(tmp_path):
    assert {"synthetic", "amazon", "directory"} <= set(CATALOG_SOURCES.names())
    with pytest.raises(ValueError, match="unknown catalog source 'nope'"):
        load_catalog({"source": "nope"}, tmp_path)
    with pytest.raises(ValueError, match="catalog source 'synthetic' takes no option 'products'"):
        load_catalog({"source": "synthetic", "products": 10}, tmp_path)
    with pytest.raises(ValueError, match="data.num_products must be at least 1, got -5"):
        load_catalog({"source": "synthetic", "num_products": -5}, tmp_path)
    saved = Catalog(_products(), _edges()).save(tmp_path / "saved")
    assert len(load_catalog({"source": "directory", "path": str(saved)}, tmp_path / "cache")) == 4
    assert not (tmp_path / "cache").exists()  # a directory source is read in place, never cached


def test_synthetic_config_key_depends_on_every_field():
    base = SyntheticConfig()
    assert base.key() == SyntheticConfig().key()
    assert len({base.key(), SyntheticConfig(seed=1).key(), SyntheticConfig(image_size=32).key(),
                SyntheticConfig(missing_image_rate=0.5).key()}) == 4


def test_edge_index_uses_insertion_order_rows(catalog):
    ei = catalog.edge_index(["also_buy"])
    assert ei.dtype == torch.long
    assert [(catalog.ids[s], catalog.ids[d]) for s, d in ei.t().tolist()] == [("A", "B"), ("C", "D")]


@pytest.mark.parametrize("size", [1, 5, 300])
def test_synthetic_pool_draws_what_rng_choice_draws(size):
    """The generator's O(log n) weighted draw picks what ``rng.choice(pool, p=w / w.sum())`` picks from the same
    random state (pool: the members, a few left out, a few others added), and consumes the same random numbers."""
    from gnn_mmsearch.data.synthetic import _Pool

    weight = np.random.default_rng(size).lognormal(3.0, 1.0, 1000)
    members = np.sort(np.random.default_rng(size + 1).choice(1000, size, replace=False))
    others = np.setdiff1d(np.arange(1000), members)
    pool, ours, theirs = _Pool(members, weight), np.random.default_rng(7), np.random.default_rng(7)
    for trial in range(300):
        exclude = [int(members[trial % size]), int(others[trial])] if trial % 3 else []
        extra = others[trial % 7:trial % 7 + trial % 4]
        left = np.union1d(members[~np.isin(members, exclude)], np.setdiff1d(extra, exclude))
        expected = int(theirs.choice(left, p=weight[left] / weight[left].sum())) if len(left) else None
        assert pool.draw(ours, exclude, extra) == expected
    assert ours.random() == theirs.random()
    assert _Pool(members[:0], weight).draw(ours, [], [3]) == 3 and _Pool(members[:0], weight).draw(ours) is None
