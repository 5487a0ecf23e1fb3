import time

import numpy as np
import pytest

from gnn_mmsearch.data import Catalog, Product
from gnn_mmsearch.evaluation.diversity import (category_coverage, intra_list_diversity, mean_category_coverage,
                                               mean_intra_list_diversity)
from gnn_mmsearch.index import create_index
from gnn_mmsearch.ranking import ItemTable, RankingPipeline, RankQuery, mmr


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def groups():
    """Three tight groups of 10 near-identical vectors; group 0 is the most relevant, then 1, then 2."""
    rng = np.random.default_rng(0)
    centers = np.eye(3, 16)
    cand = unit(np.repeat(centers, 10, axis=0) + 0.01 * rng.standard_normal((30, 16)))
    rel = np.repeat([0.9, 0.8, 0.7], 10) + 0.01 * rng.random(30)
    return rel.astype(np.float32), cand


def test_lambda_one_is_relevance_order():
    rng = np.random.default_rng(1)
    rel, cand = rng.random(50), unit(rng.standard_normal((50, 8)))
    np.testing.assert_array_equal(mmr(rel, cand, 10, 1.0), np.argsort(-rel)[:10])


def test_low_lambda_spreads_out(groups):
    rel, cand = groups
    assert {i // 10 for i in mmr(rel, cand, 3, 1.0)} == {0}
    picked = mmr(rel, cand, 3, 0.05)
    assert picked[0] == np.argmax(rel) and sorted(i // 10 for i in picked) == [0, 1, 2]
    assert intra_list_diversity(cand[picked]) > 0.9 > intra_list_diversity(cand[mmr(rel, cand, 3, 1.0)]) + 0.8


def test_avoids_duplicates():
    rng = np.random.default_rng(2)
    base = unit(rng.standard_normal((5, 32)))
    cand = np.repeat(base, 2, axis=0)  # every candidate twice, the copies adjacent
    rel = np.linspace(0.9, 0.5, 10).astype(np.float32)
    assert len({i // 2 for i in mmr(rel, cand, 3, 1.0)}) == 2  # pure relevance takes a copy
    assert sorted(i // 2 for i in mmr(rel, cand, 5, 0.5)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("k, c", [(20, 7), (7, 7), (3, 7), (0, 7), (5, 0)])
def test_returns_min_k_c_distinct(k, c):
    rng = np.random.default_rng(3)
    picked = mmr(rng.random(c), unit(rng.standard_normal((c, 4))) if c else np.empty((0, 4)), k, 0.3)
    assert picked.dtype == np.int64 and len(picked) == min(k, c) == len(set(picked.tolist()))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="lambda_"):
        mmr(np.ones(3), np.eye(3), 2, 1.5)
    with pytest.raises(ValueError, match="candidates"):
        mmr(np.ones(3), np.eye(4), 2, 0.5)


def test_speed_10_of_200():
    rng = np.random.default_rng(4)
    rel, cand = rng.random(200).astype(np.float32), unit(rng.standard_normal((200, 256)))
    runs = []
    for _ in range(50):
        start = time.perf_counter()
        mmr(rel, cand, 10, 0.5)
        runs.append(time.perf_counter() - start)
    assert min(runs) < 1e-3


def test_pipeline_diversifies_on_normalised_scores(groups):
    """The pipeline's diversify stage is ``mmr`` on the min-max normalised final score: lambda means the same for
    cosine scores and for any ranker's scale."""
    rel, cand = groups
    ids = [f"g{i // 10}-{i % 10}" for i in range(30)]
    index = create_index("exact", dim=16)
    index.add(cand, ids)
    query = unit(np.array([0.9, 0.8, 0.7] + [0.0] * 13))
    result = index.search(query, 30)
    table = ItemTable.from_catalog(Catalog([Product(i) for i in ids]), ["also_buy"])
    ranked = RankingPipeline(table, mmr_lambda=0.3).rank(result.ids[0], result.scores[0],
                                                         index.vectors(result.ids[0]), RankQuery(), 3)
    assert ranked.ids[0] == result.ids[0][0]
    assert sorted(i[:2] for i in ranked.ids) == ["g0", "g1", "g2"]
    scores = result.scores[0]
    order = mmr((scores - scores.min()) / (scores.max() - scores.min()), index.vectors(result.ids[0]), 3, 0.3)
    assert ranked.ids == [result.ids[0][i] for i in order]
    shifted = RankingPipeline(table, mmr_lambda=0.3).rank(result.ids[0], 10 * result.scores[0] - 4,
                                                          index.vectors(result.ids[0]), RankQuery(), 3)
    assert shifted.ids == ranked.ids  # an affine change of the scores changes nothing
    plain = RankingPipeline(table, mmr_lambda=0.3).rank(result.ids[0], result.scores[0],
                                                        index.vectors(result.ids[0]), RankQuery(), 3, mmr_lambda=1.0)
    assert plain.ids == result.ids[0][:3]  # lambda 1: relevance order, MMR off


def test_diversity_metrics():
    assert intra_list_diversity(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)
    assert intra_list_diversity(np.eye(5)) == pytest.approx(1.0)
    assert intra_list_diversity(np.array([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(2.0)
    assert intra_list_diversity(np.ones((1, 3))) == 0.0 == intra_list_diversity(np.empty((0, 3)))
    assert mean_intra_list_diversity([np.eye(3), np.ones((2, 3))]) == pytest.approx(0.5)
    assert category_coverage(["a", "b", "a", None, ["x", "y"]], 6) == pytest.approx(0.5)
    assert mean_category_coverage([["a"], ["a", "b"]], 4) == pytest.approx(0.375)
    assert mean_intra_list_diversity([]) == 0.0
    with pytest.raises(ValueError):
        category_coverage(["a"], 0)
