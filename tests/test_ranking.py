"""Ranking stages: features and their defaults, rules, LambdaMART / RankSVM (save/load), personalization (cold
users), the staged pipeline, user queries and the train/test leakage guard."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SMALL_RUN, run_cli
from gnn_mmsearch.cli import main

from gnn_mmsearch.data.catalog import Catalog, Edge, Interaction, Product
from gnn_mmsearch.index import create_index
from gnn_mmsearch.ranking import (FEATURES, ItemTable, LambdaMART, Personalizer, RankingPipeline, RankQuery,
                                  RankSVM, RuleScorer, build_features, load_ranker, user_vector)
from gnn_mmsearch.ranking.dataset import (UserQuery, assert_no_leakage, candidate_lists, rank_query, split_users,
                                          training_examples, user_queries)
from gnn_mmsearch.ranking.evaluate import ndcg_at_k, recall_at_k
from gnn_mmsearch.search import Searcher

COL = {name: j for j, name in enumerate(FEATURES)}


@pytest.fixture
def world():
    """40 products in 4 groups (vectors cluster by group), co-purchase links inside groups, 12 users who buy in
    one group; product 0 has no price and no rating."""
    rng = np.random.default_rng(0)
    n, dim = 40, 8
    centres = rng.normal(size=(4, dim))
    vec = centres[np.arange(n) % 4] + 0.3 * rng.normal(size=(n, dim))
    vec = (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)
    products = [Product(f"P{i}", title=f"item {i}", category=["C", f"g{i % 4}"],
                        price=None if i == 0 else 10.0 + i, rating=None if i == 0 else 3.0 + (i % 3),
                        popularity=float(1 + i)) for i in range(n)]
    edges = [Edge(f"P{i}", f"P{i + 4}") for i in range(n - 4)]
    inter = [Interaction(f"U{u}", f"P{(u % 4) + 4 * j}", float(t), 5.0)
             for u in range(12) for t, j in enumerate(rng.permutation(10)[:6])]
    catalog = Catalog(products, edges, inter)
    index = create_index("exact", dim=dim)
    index.add(vec, catalog.ids)
    return catalog, index, vec


def test_features_defaults_for_missing_values(world):
    catalog, index, vec = world
    table = ItemTable.from_catalog(catalog)
    rows = np.arange(5)
    x = build_features(table, rows, np.array([np.nan, 0.5, 0.4, 0.3, 0.2]), vec[rows], RankQuery())
    assert x.shape == (5, len(FEATURES)) and np.isfinite(x).all()
    assert x[0, COL["retrieval"]] == 0  # NaN score -> 0
    assert x[0, COL["price_missing"]] == 1 and x[1, COL["price_missing"]] == 0
    assert x[0, COL["price"]] == pytest.approx(np.median(table.price[1:]))  # missing price -> catalog median
    assert x[0, COL["rating"]] == pytest.approx(np.median(table.rating[1:]))
    assert (x[:, COL["personal_missing"]] == 1).all() and (x[:, COL["personal"]] == 0).all()  # cold user
    assert (x[:, COL["text_missing"]] == 1).all() and (x[:, COL["graph"]] == 0).all()


def test_features_graph_personal_and_modal(world):
    catalog, index, vec = world
    text = np.eye(40, 6, dtype=np.float32)
    ok = np.ones(40, bool)
    ok[3] = False
    table = ItemTable.from_catalog(catalog, {"text": (text, ok)})
    user = user_vector(vec[[4, 8]], "mean")
    q = RankQuery(anchors=np.array([4]), user=user, modal={"text": text[2]})
    rows = np.array([0, 2, 3, 8])
    x = build_features(table, rows, np.ones(4), vec[rows], q)
    assert x[:, COL["graph"]].tolist() == pytest.approx([np.log1p(1), 0, 0, np.log1p(1)])  # P0-P4, P4-P8 linked
    assert x[:, COL["text_sim"]].tolist() == pytest.approx([0, 1, 0, 0])
    assert x[:, COL["text_missing"]].tolist() == [0, 0, 1, 0]
    assert x[:, COL["personal"]] == pytest.approx(vec[rows] @ user)
    assert (x[:, COL["personal_missing"]] == 0).all()


def test_user_vector_methods_and_cold_user():
    h = np.array([[1, 0], [0, 1]], np.float32)
    assert user_vector(np.empty((0, 2)), "mean") is None
    assert user_vector(np.full((1, 2), np.nan), "attention") is None
    assert user_vector(h, "mean") == pytest.approx(np.array([1, 1]) / np.sqrt(2))
    rec = user_vector(h, "recency", decay=0.5)
    assert rec[1] > rec[0]  # the newest item weighs most
    att = user_vector(h, "attention", query=np.array([1.0, 0.0]), temperature=0.1)
    assert att[0] > 0.99  # attends to the history item like the query
    with pytest.raises(ValueError):
        user_vector(h, "median")


def test_personalize_cold_user_passes_through(world):
    catalog, index, vec = world
    scores = np.linspace(1, 0, 10).astype(np.float32)
    pers = Personalizer("mean", weight=1.0)
    assert pers(scores, vec[:10], None) is not None
    np.testing.assert_array_equal(pers(scores, vec[:10], None), scores)
    table = ItemTable.from_catalog(catalog)
    ids, s = catalog.ids[:10], scores
    cold = RankingPipeline(table, RuleScorer(), pers).rank(ids, s, vec[:10], RankQuery(user=None), 5)
    plain = RankingPipeline(table, RuleScorer()).rank(ids, s, vec[:10], RankQuery(), 5)
    assert cold.ids == plain.ids and "personal" not in cold.stages
    warm = RankingPipeline(table, RuleScorer(), pers).rank(ids, s, vec[:10], RankQuery(user=vec[3]), 5)
    assert warm.ids[0] in {catalog.ids[i] for i in range(3, 10, 4)} and "personal" in warm.stages


def test_rules_weights_and_hard_filters(world):
    catalog, index, vec = world
    table = ItemTable.from_catalog(catalog)
    rows = np.arange(1, 11)
    x = build_features(table, rows, np.zeros(10), vec[rows], RankQuery())
    pop_only = RuleScorer({"popularity": 1.0}).score(x)
    assert np.argmax(pop_only) == 9  # the most popular
    cheap = RuleScorer({"price": -1.0}).score(x)
    assert np.argmax(cheap) == 0
    filtered = RuleScorer({"popularity": 1.0}, min_rating=4.5, max_price=18).score(x)
    keep = np.isfinite(filtered)
    assert keep.tolist() == [(3.0 + (i % 3)) >= 4.5 and 10.0 + i <= 18 for i in rows]
    with pytest.raises(ValueError, match="unknown rule feature"):
        RuleScorer({"colour": 1.0})
    res = RankingPipeline(table, RuleScorer({"popularity": 1.0}, min_rating=4.5)).rank(
        catalog.ids[1:11], np.zeros(10), vec[rows], RankQuery(), 10)
    assert len(res.ids) == int((table.rating[rows] >= 4.5).sum())  # hard filter drops candidates


def _learnable(seed=0, queries=30, size=20):
    """Relevance follows popularity and the personal score; the retrieval score is noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(queries * size, len(FEATURES))).astype(np.float32)
    y = ((x[:, COL["popularity"]] + x[:, COL["personal"]]) > 1.0).astype(np.int32)
    return x, y, np.full(queries, size)


@pytest.mark.parametrize("cls", [LambdaMART, RankSVM])
def test_learned_rankers_learn_and_reload_identically(cls, tmp_path):
    x, y, groups = _learnable()
    ranker = cls(seed=0).fit(x, y, groups)
    xt, yt, gt = _learnable(seed=1)
    scores = ranker.score(xt)
    ndcg = np.mean([ndcg_at_k([str(i) for i in np.argsort(-scores[s:s + 20])],
                              {str(i) for i in np.flatnonzero(yt[s:s + 20])}, 10)
                    for s in range(0, len(yt), 20) if yt[s:s + 20].any()])
    assert ndcg > 0.8
    loaded = load_ranker(ranker.save(tmp_path / cls.kind))
    np.testing.assert_array_equal(loaded.score(xt), scores)
    bad = xt.copy()
    bad[0, :] = np.nan
    assert np.isfinite(loaded.score(bad)).all()  # NaN features -> 0, no crash


def test_load_ranker_rejects_other_features(tmp_path):
    x, y, groups = _learnable()
    path = RankSVM().fit(x, y, groups).save(tmp_path / "r")
    meta = (path / "ranker.json").read_text().replace('"retrieval", ', "")
    (path / "ranker.json").write_text(meta)
    with pytest.raises(ValueError, match="trained on features"):
        load_ranker(path)


def test_user_queries_hold_out_latest_items(world):
    catalog, *_ = world
    queries = user_queries(catalog, holdout=2)
    assert queries
    for q in queries:
        times = {i.item: i.timestamp for i in catalog.interactions if i.user == q.user}
        assert min(times[t] for t in q.targets) > max(times[h] for h in q.history)
        assert not q.targets & set(q.history) and q.query_item in q.targets


def test_leakage_guard(world):
    catalog, *_ = world
    train, test = split_users(user_queries(catalog), 0.3, seed=0)
    assert train and test
    assert_no_leakage(train, test)
    with pytest.raises(AssertionError, match="both train and test"):
        assert_no_leakage(train + test[:1], test)
    t = test[0]
    with pytest.raises(AssertionError, match="in their user's history"):
        assert_no_leakage(train, [UserQuery(t.user, [*t.history, t.query_item], t.targets, t.query_item)])


def test_training_examples_and_pipeline_end_to_end(world, tmp_path):
    catalog, index, vec = world
    table = ItemTable.from_catalog(catalog)
    queries = user_queries(catalog, holdout=2)
    train, test = split_users(queries, 0.3, seed=0)
    pers = Personalizer("attention")
    qv = np.stack([index.vectors([q.query_item])[0] for q in train])
    cands = candidate_lists(index, train, qv, 20)
    rqs = [rank_query(table, index, q, v, None, pers) for q, v in zip(train, qv)]
    x, y, groups = training_examples(table, index, train, cands, rqs)
    assert len(x) == groups.sum() and y.sum() > 0
    ranker = LambdaMART(n_estimators=10, min_child_samples=2).fit(x, y, groups)
    loaded = load_ranker(ranker.save(tmp_path / "lm"))
    pipe = RankingPipeline(table, loaded, pers, mmr_lambda=0.7)
    ids, scores = cands[0]
    res = pipe.rank(ids, scores, index.vectors(ids), rqs[0], 5)
    assert len(res.ids) == 5 and len(set(res.ids)) == 5
    assert set(res.stages) == {"retrieval", "score", "personal", "final"}
    same = RankingPipeline(table, ranker, pers, mmr_lambda=0.7).rank(ids, scores, index.vectors(ids), rqs[0], 5)
    assert same.ids == res.ids


def test_metrics():
    assert ndcg_at_k(["a", "b"], {"a"}, 10) == 1.0
    assert ndcg_at_k(["b", "a"], {"a"}, 10) == pytest.approx(1 / np.log2(3))
    assert recall_at_k(["a", "b", "c"], {"a", "d"}, 2) == 0.5
    assert ndcg_at_k([], set(), 10) == 0.0


@pytest.fixture(scope="module")
def ranked_run(first_run, tmp_path_factory):
    """The small run with the whole ranking pipeline (``rerank=personalized``: LambdaMART, personalize, MMR); after
    ``first_run``, whose feature-cache counts assume it extracts first."""
    run_dir = tmp_path_factory.mktemp("runs") / "ranked"
    return run_dir, run_cli(run_dir, *SMALL_RUN, "rerank=personalized", "logger=none")


def test_run_trains_saves_and_serves_the_ranker(ranked_run, capsys):
    run_dir, printed = ranked_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"user_query/ndcg@10", "user_query_ranked/ndcg@10"} <= set(metrics)
    searcher = Searcher.from_run(run_dir)
    assert isinstance(searcher.ranking.scorer, LambdaMART) and searcher.ranking.mmr_lambda == 0.7
    user = searcher.catalog.interactions[0].user
    warm = searcher.search(text="phone", k=5, user=user)
    assert len(warm) == 5 and all(set(h.stages) == {"retrieval", "score", "personal", "final"} for h in warm)
    cold = searcher.search(text="phone", k=5, user="no-such-user")  # cold user: unpersonalized, no crash
    assert [h.id for h in cold] == [h.id for h in searcher.search(text="phone", k=5)]
    assert all("personal" not in h.stages for h in cold)
    batch = searcher.search_batch(["phone"], k=5)[0]
    assert [h.id for h in batch] == [h.id for h in cold] and all(h.stages for h in batch)
    assert main(["search", "phone", "--run", str(run_dir), "--user", user, "--explain-scores", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("retrieval=") == 3 and "personal=" in out
