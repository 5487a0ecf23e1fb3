"""Ranking stages: features and their defaults, rules, LambdaMART / RankSVM (save/load), personalization (cold
users), the staged pipeline, user queries and the train/test leakage guard."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import SMALL_RUN, run_cli
from gnn_mmsearch.cli import main
from gnn_mmsearch.data.catalog import Catalog, Edge, Interaction, Product
from gnn_mmsearch.evaluation import RetrievalMetrics, list_metrics
from gnn_mmsearch.features import ProductFeatures
from gnn_mmsearch.index import create_index
from gnn_mmsearch.ranking import (FEATURES, RANKERS, ItemTable, Personalizer, RankingPipeline, RankQuery,
                                  build_features, create_ranker, load_ranker, user_vector)
from gnn_mmsearch.ranking.ltr import LambdaMART, RankSVM
from gnn_mmsearch.ranking.modal import load_modal, product_modal, save_modal, split_query_features
from gnn_mmsearch.ranking.rules import RuleScorer
from gnn_mmsearch.run_dir import RunDir
from gnn_mmsearch.search import Hit, Searcher
from gnn_mmsearch.training import ranker as ranking_train
from gnn_mmsearch.training._user_queries import (UserQuery, assert_no_leakage, split_users, training_examples,
                                                 user_queries)

COL = {name: j for j, name in enumerate(FEATURES)}
EDGES = ["also_buy", "bought_together"]


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
    table = ItemTable.from_catalog(catalog, EDGES)
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
    table = ItemTable.from_catalog(catalog, EDGES, {"text": (text, ok)})
    user = user_vector(vec[[4, 8]], "mean")
    q = RankQuery(anchors=np.array([4]), user=user, modal={"text": text[2]})
    rows = np.array([0, 2, 3, 8])
    x = build_features(table, rows, np.ones(4), vec[rows], q)
    assert x[:, COL["graph"]].tolist() == pytest.approx([np.log1p(1), 0, 0, np.log1p(1)])  # P0-P4, P4-P8 linked
    assert x[:, COL["text_sim"]].tolist() == pytest.approx([0, 1, 0, 0])
    assert x[:, COL["text_missing"]].tolist() == [0, 0, 1, 0]
    assert x[:, COL["personal"]] == pytest.approx(vec[rows] @ user)
    assert (x[:, COL["personal_missing"]] == 0).all()


def _features(n: int, image_ok: np.ndarray, seed: int = 0) -> ProductFeatures:
    """Raw product features (text for all, images where ``image_ok``; missing rows are zeros)."""
    rng = np.random.default_rng(seed)
    text, image = rng.normal(size=(n, 6)).astype(np.float32), rng.random(size=(n, 5)).astype(np.float32) * 3
    image[~image_ok] = 0
    return ProductFeatures(torch.from_numpy(image), torch.from_numpy(image_ok), torch.from_numpy(text),
                           torch.ones(n, dtype=torch.bool))


def test_saved_modal_features_give_the_training_features(world, tmp_path):
    catalog, index, vec = world
    image_ok = np.ones(40, bool)
    image_ok[3] = False  # P3 has no image
    feats = _features(40, image_ok)
    directory = save_modal(product_modal(feats), tmp_path)
    assert directory == tmp_path
    loaded = load_modal(tmp_path, len(catalog))
    assert set(loaded) == {"text", "image"} and loaded["image"][0].dtype == np.float16
    assert loaded["image"][1].tolist() == image_ok.tolist()
    table = ItemTable.from_catalog(catalog, EDGES, loaded)
    q = RankQuery(modal={"text": feats.text[7].numpy(), "image": feats.image[9].numpy()})
    rows = np.array([3, 7, 9])
    x = build_features(table, rows, np.ones(3), vec[rows], q)
    image = feats.image.numpy() / np.linalg.norm(feats.image.numpy(), axis=1, keepdims=True).clip(1e-12)
    assert x[:, COL["text_sim"]][1] == pytest.approx(1, abs=1e-3)
    assert x[:, COL["image_sim"]].tolist() == pytest.approx([0, image[7] @ image[9], 1], abs=1e-3)
    assert x[:, COL["image_missing"]].tolist() == [1, 0, 0] and (x[:, COL["text_missing"]] == 0).all()
    again = build_features(ItemTable.from_catalog(catalog, EDGES, load_modal(tmp_path, len(catalog))), rows, np.ones(3),
                           vec[rows], q)
    np.testing.assert_array_equal(again, x)  # what training sees is what serving sees, bit for bit


def test_catalog_without_images_stores_no_image_features(world, tmp_path):
    catalog, index, vec = world
    save_modal(product_modal(_features(40, np.ones(40, bool))), tmp_path)
    assert (tmp_path / "image.npy").exists()
    feats = _features(40, np.zeros(40, bool))
    save_modal(product_modal(feats), tmp_path)  # the same run directory again, now without images
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.npy", "text_ok.npy"]
    loaded = load_modal(tmp_path, len(catalog))
    assert set(loaded) == {"text"}
    rows = np.arange(4)
    q = RankQuery(modal={"text": feats.text[0].numpy(), "image": np.ones(5, np.float32)})
    x = build_features(ItemTable.from_catalog(catalog, EDGES, loaded), rows, np.ones(4), vec[rows], q)
    all_false = ItemTable.from_catalog(catalog, EDGES, {**loaded, "image": (feats.image.numpy(), feats.image_mask.numpy())})
    np.testing.assert_array_equal(x, build_features(all_false, rows, np.ones(4), vec[rows], q))
    assert (x[:, COL["image_missing"]] == 1).all() and (x[:, COL["image_sim"]] == 0).all()
    assert (x[:, COL["text_missing"]] == 0).all() and x[0, COL["text_sim"]] == pytest.approx(1, abs=1e-3)


def test_load_modal_without_features_or_for_another_catalog(world, tmp_path):
    catalog, *_ = world
    assert load_modal(tmp_path, len(catalog)) == {}  # a run without ranking features: fused score only
    save_modal(product_modal(_features(40, np.ones(40, bool))), tmp_path)
    with pytest.raises(ValueError, match="the catalog has 41"):
        load_modal(tmp_path, 41)


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
    table = ItemTable.from_catalog(catalog, EDGES)
    ids, s = catalog.ids[:10], scores
    cold = RankingPipeline(table, RuleScorer(), pers).rank(ids, s, vec[:10], RankQuery(user=None), 5)
    plain = RankingPipeline(table, RuleScorer()).rank(ids, s, vec[:10], RankQuery(), 5)
    assert cold.ids == plain.ids and "personal" not in cold.stages
    warm = RankingPipeline(table, RuleScorer(), pers).rank(ids, s, vec[:10], RankQuery(user=vec[3]), 5)
    assert warm.ids[0] in {catalog.ids[i] for i in range(3, 10, 4)} and "personal" in warm.stages


def test_rules_weights_and_hard_filters(world):
    catalog, index, vec = world
    table = ItemTable.from_catalog(catalog, EDGES)
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
    assert isinstance(create_ranker("rules", seed=3, weights={"price": 1.0}), RuleScorer)  # not learned: no seed
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
    metric = RetrievalMetrics((10,), ("ndcg",))
    for q, s in enumerate(range(0, len(yt), 20)):
        metric.update(torch.from_numpy(np.argsort(-scores[s:s + 20])[None, :10].copy()),
                      torch.from_numpy(np.stack([np.zeros_like(np.flatnonzero(yt[s:s + 20])), np.flatnonzero(yt[s:s + 20])])))
    assert metric.compute()["ndcg@10"] > 0.8
    loaded = load_ranker(ranker.save(tmp_path / RANKERS.name_of(cls)))
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
    table = ItemTable.from_catalog(catalog, EDGES)
    queries = user_queries(catalog, holdout=2)
    train, test = split_users(queries, 0.3, seed=0)
    pers = Personalizer("attention")
    qv = np.stack([index.vectors([q.query_item])[0] for q in train])
    found = index.search(qv, 20, exclude=[q.history for q in train])
    cands = list(zip(found.ids, found.scores))
    builder = RankingPipeline(table, users=pers)
    rqs = [builder.query(v, index.vectors, q.history, personal=True) for q, v in zip(train, qv)]
    assert all(rq.user is not None and len(rq.anchors) == len(q.history) for rq, q in zip(rqs, train))
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


def test_list_metrics_with_several_relevant_items(world):
    catalog, index, vec = world
    categories = {p.id: p.category for p in catalog.products}
    m = list_metrics([["P1", "P2"], ["P2", "P1", "P3"]], [{"P1"}, {"P1", "P9"}], index, categories, k=2)
    assert m["recall@2"] == pytest.approx((1 + 0.5) / 2)
    assert m["ndcg@2"] == pytest.approx((1 + (1 / np.log2(3)) / (1 + 1 / np.log2(3))) / 2)
    with pytest.raises(ValueError, match="2 result lists but 1 targets"):
        list_metrics([["P1"], ["P2"]], [{"P1"}], index, categories)


@pytest.fixture(scope="module")
def ranked_run(first_run, tmp_path_factory):
    """The small run with the whole ranking pipeline (``ranking=personalized``: LambdaMART, personalize, MMR); after
    ``first_run``, whose feature-cache counts assume it extracts first."""
    run_dir = tmp_path_factory.mktemp("runs") / "ranked"
    seen = []

    def training_examples_seen(*args):
        seen.append((args, training_examples(*args)))
        return seen[-1][1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ranking_train, "training_examples", training_examples_seen)
        printed = run_cli(run_dir, *SMALL_RUN, "ranking=personalized", "logger=none")
    return run_dir, printed, seen


def test_run_trains_saves_and_serves_the_ranker(ranked_run, capsys):
    run_dir, printed, _ = ranked_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"user_query/ndcg@10", "user_query_ranked/ndcg@10"} <= set(metrics)
    searcher = Searcher.from_run(run_dir)
    assert isinstance(searcher.pipeline.scorer, LambdaMART) and searcher.pipeline.mmr_lambda == 0.7
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


def test_served_ranker_scores_like_in_training(ranked_run):
    """A saved-then-loaded run scores a training query's candidates (cold, i.e. without the user) exactly as the
    ranker saw them in training, raw text similarity included."""
    run_dir, _, seen = ranked_run
    ((table, index, queries, candidates, rank_queries), (x, y, groups)), = seen
    searcher = Searcher.from_run(run_dir)
    assert set(searcher.pipeline.table.modal) == {"text", "image"}
    assert searcher.pipeline.table.modal["image"][1].sum() < len(searcher.catalog)  # some products have no image
    seed = RunDir(run_dir).info()["seed"]
    text_of = {q.user: t for q, t in ranking_train.user_query_texts(searcher.catalog, seed)}
    starts = np.cumsum([0, *groups])
    kept = [i for i, (q, (ids, _)) in enumerate(zip(queries, candidates)) if q.targets & set(ids)]
    cold = [(i, j) for j, i in enumerate(kept) if rank_queries[i].user is None][:3]
    assert cold
    for i, j in cold:
        ids, x_train = candidates[i][0], x[starts[j]:starts[j + 1]]
        has_text = searcher.pipeline.table.modal["text"][1][table.rows(ids)]
        assert (x_train[:, COL["text_missing"]] == ~has_text).all() and x_train[:, COL["text_sim"]].std() > 0
        text = text_of[queries[i].user]
        raw = searcher.encoder.query_features(text=text)
        vector = searcher.encoder.embed_queries(raw).detach().numpy()
        query = searcher.pipeline.query(vector[0], searcher.index.vectors,
                                        modal=split_query_features(raw, searcher.pipeline.table.modal)[0])
        served = searcher.serve(vector, [query], 50, exclude=[queries[i].history], features=raw, texts=[text])[0]
        hits = [Hit(pid, 0.0, None, "", None, {n: float(v[r]) for n, v in served.stages.items()})
                for r, pid in enumerate(served.ids)]
        row = {pid: r for r, pid in enumerate(ids)}
        shared = [h for h in hits if h.id in row]
        assert len(shared) == 50  # the served candidates are the training ones
        x_shared = x_train[[row[h.id] for h in shared]]
        trained = searcher.pipeline.scorer.score(x_shared)
        np.testing.assert_allclose([h.stages["retrieval"] for h in shared], x_shared[:, COL["retrieval"]], atol=1e-5)
        np.testing.assert_allclose([h.stages["score"] for h in shared], trained, rtol=1e-5, atol=1e-5)
        fused_only = x_shared.copy()
        fused_only[:, [COL["text_sim"], COL["image_sim"]]] = 0
        fused_only[:, [COL["text_missing"], COL["image_missing"]]] = 1
        assert np.abs(searcher.pipeline.scorer.score(fused_only) - trained).max() > 1e-3  # the raw features count


def test_served_queries_are_built_as_in_training(ranked_run, monkeypatch):
    """Serving and training build a user's ranking query with the same ``RankingPipeline.query``: for the same
    text, user history and raw features, the served features equal the ones training computes."""
    run_dir, *_ = ranked_run
    searcher = Searcher.from_run(run_dir)
    user = searcher.catalog.interactions[0].user
    served = []
    original = RankingPipeline.rank

    def spy(self, ids, scores, vectors, query, k, mmr_lambda=None):
        served.append((ids, scores, vectors, query))
        return original(self, ids, scores, vectors, query, k, mmr_lambda)

    monkeypatch.setattr(RankingPipeline, "rank", spy)
    searcher.search(text="red leather wallet", user=user, k=5)
    ids, scores, vectors, query = served[-1]
    raw = searcher.encoder.query_features(text="red leather wallet")
    vector = searcher.encoder.embed_queries(raw).detach().numpy()[0]
    pipe = searcher.pipeline
    trained = pipe.query(vector, searcher.index.vectors, searcher.user_history(user), True,
                         split_query_features(raw, pipe.table.modal)[0])
    rows = pipe.table.rows(ids)
    np.testing.assert_array_equal(build_features(pipe.table, rows, scores, vectors, query),
                                  build_features(pipe.table, rows, scores, vectors, trained))
    assert query.user is not None and len(query.anchors) > 0 and set(query.modal) == {"text"}


def test_query_features_are_split_per_query_for_the_stored_modalities(ranked_run):
    run_dir, *_ = ranked_run
    searcher = Searcher.from_run(run_dir)
    text_only = {"text": searcher.pipeline.table.modal["text"]}
    features = searcher.encoder.query_features(text=["wireless mouse", "espresso machine"])
    raw = split_query_features(features, text_only)
    assert [set(r) for r in raw] == [{"text"}, {"text"}]
    expected, _ = searcher.encoder.feature_extractor("text").encode(["wireless mouse"], progress=False)
    np.testing.assert_allclose(raw[0]["text"], expected[0], atol=1e-6)
    assert split_query_features(features, {"image": searcher.pipeline.table.modal.get("image")}) == [{}, {}]
    with pytest.raises(ValueError, match="cannot read query image"):
        searcher.encoder.query_features(image="no-such.jpg")