"""Retrieval metrics, exact top-k with exclusions, co-purchase evaluation and title queries."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gnn_mmsearch.data import EdgeSplit, Product
from gnn_mmsearch.evaluation import RetrievalMetrics, evaluate_copurchase, evaluate_queries, title_queries, top_k
from gnn_mmsearch.evaluation.queries import title_query, title_query_bound, title_query_probability
from gnn_mmsearch._topk import top_k_indices
from gnn_mmsearch.evaluation.retrieval import block_rows, sample_queries


def _pairs(*pairs) -> torch.Tensor:
    return torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)


# ------------------------------------------------------------------------------------------ metrics
def test_retrieval_metrics_on_a_hand_made_case():
    """Three queries ranked by hand.

    q0: ranking [5, 1, 2], relevant {1, 7}: nothing at rank 1, item 1 at rank 2.
    q1: ranking [3, 0, 4], relevant {3}:    hit at rank 1.
    q2: ranking [6, 8, 9], relevant {0}:    no hit.
    """
    pred = torch.tensor([[5, 1, 2], [3, 0, 4], [6, 8, 9]])
    targets = torch.tensor([[0, 0, 1, 2], [1, 7, 3, 0]])
    metrics = RetrievalMetrics(ks=(3, 1))
    metrics.update(pred, targets)
    got = metrics.compute()
    idcg2 = 1 + 1 / math.log2(3)
    expected = {
        "recall@1": 1 / 3, "precision@1": 1 / 3, "ndcg@1": 1 / 3, "mrr@1": 1 / 3,
        "recall@3": (0.5 + 1 + 0) / 3,
        "precision@3": (1 / 3 + 1 / 3 + 0) / 3,
        "ndcg@3": ((1 / math.log2(3)) / idcg2 + 1 + 0) / 3,
        "mrr@3": (0.5 + 1 + 0) / 3,
    }
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert all(isinstance(v, float) for v in got.values())


def test_retrieval_metrics_accumulate_over_updates():
    pred = torch.tensor([[5, 1, 2], [3, 0, 4], [6, 8, 9]])
    targets = torch.tensor([[0, 0, 1, 2], [1, 7, 3, 0]])
    once = RetrievalMetrics(ks=(1, 3))
    once.update(pred, targets)
    split = RetrievalMetrics(ks=(1, 3))
    split.update(pred[:2], targets[:, :3])
    split.update(pred[2:], torch.tensor([[0], [0]]))
    assert split.compute() == pytest.approx(once.compute())


def test_evaluate_queries_single_relevant_item():
    items = torch.eye(4)
    queries = torch.tensor([[1.0, 0, 0, 0], [0, 0.1, 1.0, 0]])  # q0 -> item 0 (rank 1); q1 -> item 1 at rank 2
    got = evaluate_queries(queries, torch.tensor([0, 1]), items, ks=(1, 2))
    assert got["recall@1"] == pytest.approx(0.5) and got["recall@2"] == pytest.approx(1.0)
    assert got["mrr@2"] == pytest.approx((1 + 0.5) / 2)


# -------------------------------------------------------------------------------------------- top_k
def test_top_k_ranks_by_inner_product():
    items = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert top_k(queries, items, 2).tolist() == [[0, 1], [2, 1]]
    assert top_k(queries, items, 10).shape == (2, 4)  # k is capped at the number of items


def test_top_k_indices_break_ties_by_lower_id_whatever_k_is_asked():
    scores = torch.randint(0, 4, (64, 300), generator=torch.Generator().manual_seed(0)).float()  # ties by the hundred
    scores[0] = float("-inf")
    scores[1, 5:] = float("-inf")  # fewer finite scores than k
    reference = torch.from_numpy(np.argsort(-scores.numpy(), axis=1, kind="stable"))
    for k in (1, 10, 50, 300, 400):
        torch.testing.assert_close(top_k_indices(scores, k), reference[:, :k])
    assert top_k_indices(scores, 0).shape == (64, 0)


def test_top_k_honours_exclude():
    items = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, -0.1]])
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    exclude = torch.tensor([[0, 0, 1], [0, 1, 2]])  # (query row, item): q0 loses items 0, 1; q1 loses item 2
    assert top_k(queries, items, 2, exclude).tolist() == [[2, 3], [1, 0]]


def test_top_k_exclude_across_chunks():
    g = torch.Generator().manual_seed(0)
    queries, items = torch.randn(7, 4, generator=g), torch.randn(20, 4, generator=g)
    best = top_k(queries, items, 1).flatten()
    exclude = torch.stack([torch.arange(7), best])
    for chunk in (1, 3, 4096):
        got = top_k(queries, items, 5, exclude, chunk=chunk)
        assert not (got == best[:, None]).any()
        torch.testing.assert_close(got, top_k(queries, items, 6)[:, 1:])


# ---------------------------------------------------------------------------------------- copurchase
def _split(graph_only=(), val=((4, 5),), val_in_graph: bool = True) -> EdgeSplit:
    """12 products. Test links (0,1), (2,3); train links (0,6), (2,7); val and graph-only links as given."""
    train, test = _pairs((0, 6), (2, 7)), _pairs((0, 1), (2, 3))
    val = _pairs(*val)
    graph = torch.cat([train, test] + ([val] if val_in_graph else []) + [_pairs(*graph_only)], dim=1)
    return EdgeSplit(num_nodes=12, train=train, val=val, test=test, graph=graph)


BASIS = torch.linalg.qr(torch.randn(16, 12, generator=torch.Generator().manual_seed(0)))[0].t()  # 12 orthonormal rows


def _near(anchor: int, own: int, mix: float) -> torch.Tensor:
    """A unit vector close to product ``anchor`` (cosine 1/sqrt(1+mix^2))."""
    return F.normalize(BASIS[anchor] + mix * BASIS[own], dim=0)


def _embeddings(near: dict[int, tuple[int, float]]) -> torch.Tensor:
    """One basis vector per product, except ``row`` moved next to ``anchor`` for each ``row: (anchor, mix)``."""
    emb = BASIS.clone()
    for row, (anchor, mix) in near.items():
        emb[row] = _near(anchor, row, mix)
    return emb


def test_copurchase_recall_is_one_when_held_out_partners_are_nearest():
    emb = _embeddings({1: (0, 0.3), 3: (2, 0.3)})  # each test partner is its source's nearest neighbour
    got = evaluate_copurchase(emb, _split(), "test", ks=(1, 5))
    assert got["recall@1"] == pytest.approx(1.0) and got["mrr@1"] == pytest.approx(1.0)
    assert got["precision@1"] == pytest.approx(1.0) and got["ndcg@5"] == pytest.approx(1.0)
    # partners swapped (1 sits next to 2, 3 next to 0): no held-out link is found at rank 1
    swapped = _embeddings({1: (2, 0.3), 3: (0, 0.3)})
    assert evaluate_copurchase(swapped, _split(), "test", ks=(1,))["recall@1"] == pytest.approx(0.0)


def test_copurchase_never_counts_or_ranks_known_links():
    """Known neighbours (a train link 0-6, a graph-only link 2-8, the product itself) are closer than the
    held-out partner, yet the partner is ranked first: known links are removed from the ranking."""
    emb = _embeddings({1: (0, 0.3), 3: (2, 0.3), 6: (0, 0.1), 8: (2, 0.1)})
    split = _split(graph_only=[(2, 8)])
    assert top_k(emb[[0, 2]], emb, 2).tolist() == [[0, 6], [2, 8]]  # without exclusions they would win
    got = evaluate_copurchase(emb, split, "test", ks=(1, 2))
    assert got["recall@1"] == pytest.approx(1.0)
    # drop the graph-only link from the split: 8 is no longer known, so it takes rank 1 for source 2
    assert evaluate_copurchase(emb, _split(), "test", ks=(1,))["recall@1"] == pytest.approx(0.75)


def test_copurchase_at_test_time_excludes_val_links():
    """A val link is known at test time even when the message-passing graph does not carry it."""
    emb = _embeddings({1: (0, 0.3), 3: (2, 0.3), 5: (0, 0.1)})  # 5 is closer to 0 than 0's test partner 1
    split = _split(val=[(0, 5)], val_in_graph=False)
    assert evaluate_copurchase(emb, split, "test", ks=(1,))["recall@1"] == pytest.approx(1.0)
    # with an unrelated val link, 5 is an ordinary product and beats 1 for source 0
    other = _split(val=[(4, 9)], val_in_graph=False)
    assert evaluate_copurchase(emb, other, "test", ks=(1,))["recall@1"] == pytest.approx(0.75)


def test_copurchase_max_queries_ranks_a_seeded_subset_of_the_sources():
    """``max_queries`` keeps that many link endpoints (the same ones for the same seed), each with all its held-out
    partners; not smaller than the endpoints, it changes nothing."""
    emb = _embeddings({1: (0, 0.3), 3: (2, 0.3)})
    split = _split()  # test endpoints 0, 1, 2, 3; only 0 and 1 find their partner at rank 1 when 1 sits by 0
    emb[3] = _near(5, 3, 0.3)
    full = evaluate_copurchase(emb, split, "test", ks=(1,))
    assert full["recall@1"] == pytest.approx(0.5)
    assert evaluate_copurchase(emb, split, "test", (1,), max_queries=4, seed=3) == full
    got = {seed: evaluate_copurchase(emb, split, "test", (1,), max_queries=1, seed=seed)["recall@1"]
           for seed in range(12)}
    assert set(got.values()) == {0.0, 1.0}  # one endpoint at a time: found or not
    assert evaluate_copurchase(emb, split, "test", (1,), max_queries=1, seed=5)["recall@1"] == got[5]


def test_sample_queries_and_block_rows():
    assert sample_queries(range(10), None, 0) == list(range(10)) == sample_queries(range(10), 10, 0)
    picked = sample_queries(range(100, 200), 7, 1)
    assert len(set(picked)) == 7 and picked == sorted(picked) and picked == sample_queries(range(100, 200), 7, 1)
    assert picked != sample_queries(range(100, 200), 7, 2)
    assert block_rows(2_000) == 4096 and block_rows(1_000_000) == 33 and block_rows(10**9) == 1


def test_copurchase_metric_keys():
    got = evaluate_copurchase(BASIS, _split(), "val", ks=(10, 20))
    assert set(got) == {f"{m}@{k}" for m in ("recall", "precision", "ndcg", "mrr") for k in (10, 20)}
    assert all(0.0 <= v <= 1.0 for v in got.values())


# ----------------------------------------------------------------------------------------- queries
@pytest.mark.parametrize("seed", range(20))
def test_title_query_drops_the_brand_and_keeps_the_last_word(seed):
    product = Product("p", title="Nordvik Premium crimson striped leather wallet", brand="Nordvik")
    q = title_query(product, np.random.default_rng(seed))
    words = q.split()
    assert q == q.lower()
    assert "nordvik" not in words
    assert words[-1] == "wallet" and len(words) >= 2
    assert set(words) <= {"premium", "crimson", "striped", "leather", "wallet"}


def test_title_query_drops_multi_word_brand_and_handles_short_titles():
    rng = np.random.default_rng(0)
    assert title_query(Product("p", title="Cobalt Co mug", brand="Cobalt Co"), rng) == "mug"
    assert title_query(Product("p", title="Acme red mug", brand="Acme"), rng) == "red mug"
    assert title_query(Product("p", title="Acme", brand="Acme"), rng) is None
    assert title_query(Product("p", description="no title"), rng) is None
    assert title_query(Product("p", title="red mug"), rng) == "red mug"


def test_title_queries_skip_products_without_title_and_are_seeded():
    products = [Product("a", title="Acme blue canvas laptop sleeve", brand="Acme"), Product("b"),
                Product("c", title="yoga mat")]
    queries, targets = title_queries(products, [0, 1, 2], seed=0)
    assert targets == [0, 2] and queries[1] == "yoga mat" and queries[0].endswith("sleeve")
    assert title_queries(products, [0, 1, 2], seed=0) == (queries, targets)


@pytest.mark.parametrize("product", [Product("p", title="Nordvik red red leather red wallet", brand="Nordvik"),
                                     Product("p", title="Amazon eGift Card - Happy Birthday card", brand="Amazon"),
                                     Product("p", title="gift card")])
def test_title_query_probability_is_the_generators_frequency(product):
    rng, n = np.random.default_rng(0), 20_000
    seen: dict[str, int] = {}
    for _ in range(n):
        q = title_query(product, rng)
        seen[q] = seen.get(q, 0) + 1
    assert sum(title_query_probability(q, product) for q in seen) == pytest.approx(1.0)
    assert max(abs(c / n - title_query_probability(q, product)) for q, c in seen.items()) < 0.01
    assert title_query_probability("blue wallet", product) == 0.0


def test_title_query_bound_ranks_by_probability_with_random_ties():
    products = [Product("a", title="Acme gift card", brand="Acme"), Product("b", title="Bolt gift card", brand="Bolt"),
                Product("c", title="red gift card"), Product("d", title="mug")]
    assert title_query_probability("gift card", products[2]) == pytest.approx(0.7 * 0.3 + 0.3 ** 2)
    # "gift card" of a: tied first with b; of c: behind a and b
    got = title_query_bound(products, ["gift card", "gift card"], [0, 2], (1, 2, 3))
    assert got == pytest.approx({"recall@1": 0.25, "recall@2": 0.5, "recall@3": 1.0})
