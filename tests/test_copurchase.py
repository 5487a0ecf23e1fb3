"""Product queries: graph similarity + common neighbours + popularity, offline (dense) and served (re-scored)."""
import numpy as np
import pytest
import torch

from gnn_mmsearch.index import Filter, create_index
from gnn_mmsearch.retrievers import RETRIEVERS
from gnn_mmsearch.retrievers.copurchase import (CopurchaseGraph, CopurchaseRetrieval, CopurchaseWeights,
                                                choose_weights, selection_value)

# a star around 0 (1, 2, 3) plus the path 3 - 4 - 5; product 5 is isolated from 0's neighbourhood
EDGES = torch.tensor([[0, 0, 0, 3, 4], [1, 2, 3, 4, 5]])


def test_graph_signals_are_normalised_common_neighbours_and_log_degree():
    g = CopurchaseGraph(torch.cat([EDGES, EDGES[:, :1]], dim=1), 6)  # a repeated link counts once
    cn = g.common_neighbours([1]).toarray()[0]
    # 1 and 2 share neighbour 0 (degree 3); 1 and 4 share nothing (1 -> 0 -> 3 -> 4 is three hops)
    assert cn[2] == pytest.approx(1 / np.sqrt(1 * 3) / np.sqrt(3 * 1)) and cn[4] == 0 and cn[3] > 0
    assert g.popularity[0] == pytest.approx(1.0) and g.popularity[1] == pytest.approx(np.log(2) / np.log(4))
    assert g.most_popular(2).tolist() == [0, 3]
    assert CopurchaseGraph(torch.empty(2, 0, dtype=torch.long), 3).popularity.tolist() == [0, 0, 0]


def test_weights_add_the_graph_signals_to_the_embedding_scores():
    emb = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    g, rows = CopurchaseGraph(EDGES, 6), torch.tensor([1, 4])
    plain = CopurchaseWeights().scores(emb)(rows, g)
    torch.testing.assert_close(plain, emb[rows] @ emb.t())
    both = CopurchaseWeights(2.0, 0.5).scores(emb)(rows, g)
    expected = plain + 2.0 * torch.from_numpy(g.common_neighbours([1, 4]).toarray()) + 0.5 * torch.from_numpy(
        g.popularity)
    torch.testing.assert_close(both, expected)
    assert CopurchaseWeights(popularity=1.0).scores(None)(rows, g).argmax(1).tolist() == [0, 0]


def test_choose_weights_takes_the_best_mean_at_10_and_20_and_the_smaller_weights_on_ties():
    seen = []

    def evaluate(scores):
        seen.append(scores)
        first = len(seen) == 1  # best at @10 alone; every later grid point scores the same, better at @10 and @20
        return {"recall@10": 0.6, "recall@20": 0.6} if first else {"recall@10": 0.5, "recall@20": 0.9}

    weights, metrics = choose_weights(evaluate, torch.eye(3), [0.0, 1.0], [0.0, 2.0])
    assert len(seen) == 4 and metrics == {"recall@10": 0.5, "recall@20": 0.9} and weights == CopurchaseWeights(1.0, 0.0)
    assert selection_value(metrics) == pytest.approx(0.7)


def test_graph_baselines_answer_product_queries_only():
    pop = RETRIEVERS.create("popularity").fit(None, None)
    assert pop.product_scores()(torch.tensor([5]), CopurchaseGraph(EDGES, 6)).argmax().item() == 0
    cn = RETRIEVERS.create("common_neighbours").fit(None, None)
    assert cn.product_scores()(torch.tensor([1]), CopurchaseGraph(EDGES, 6))[0, 2] > 0
    assert not pop.supports(None)


def _served(weights, depth=2):
    emb = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    ids = [f"p{i}" for i in range(6)]
    index = create_index("exact", dim=8)
    index.add(emb.numpy(), ids, [{"category": ["A" if i % 2 else "B"], "price": float(i), "in_stock": True}
                                 for i in range(6)])
    graph = CopurchaseGraph(EDGES, 6)
    return emb, graph, CopurchaseRetrieval(index, graph, {p: i for i, p in enumerate(ids)}, ids, weights, depth)


@pytest.mark.parametrize("weights", [CopurchaseWeights(), CopurchaseWeights(3.0, 0.0), CopurchaseWeights(1.0, 0.7)])
def test_served_product_queries_match_the_exact_scores(weights):
    """The graph index's top ``depth`` plus two-hop neighbours and popular products, re-scored, is the exact top k
    here (the extra candidates carry every product the graph signals lift)."""
    emb, graph, served = _served(weights)
    for q in range(6):
        exact = weights.scores(emb)(torch.tensor([q]), graph)[0]
        exact[q] = -np.inf
        found = served.search([f"p{q}"], 3, exclude=[[f"p{q}"]])
        assert found.ids[0] == [f"p{i}" for i in exact.topk(3).indices.tolist()]
        np.testing.assert_allclose(found.scores[0], exact.topk(3).values.numpy(), atol=1e-5)


def test_served_product_queries_apply_filters_and_exclusions_to_every_candidate():
    _, _, served = _served(CopurchaseWeights(5.0, 5.0))
    found = served.search(["p1"], 6, filter=Filter.parse("category=A"), exclude=[["p1", "p3"]])
    assert found.ids[0] and set(found.ids[0]) <= {"p5"}  # 0, 2 and 4 are category B; 1 and 3 excluded
