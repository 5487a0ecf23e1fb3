"""Baseline retrievers (BM25, raw-feature kNN, reciprocal rank fusion), attribute queries with graded relevance and
augmented image queries."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gnn_mmsearch.data import Catalog, Product, SyntheticConfig, generate
from gnn_mmsearch.data.synthetic import CATEGORIES
from gnn_mmsearch.evaluation.attribute_queries import attribute_queries, graded_metrics, ground_truth, relevance
from gnn_mmsearch.evaluation.image_queries import augment, image_queries
from gnn_mmsearch.features import ProductFeatures
from gnn_mmsearch.retrievers import RETRIEVERS, QueryBatch
from gnn_mmsearch.retrievers.fusion import ranks


def _catalog() -> Catalog:
    return Catalog([Product("A", title="red leather wallet", brand="Acme"), Product("B", title="blue canvas bag"),
                    Product("C", description="a red mug for coffee"), Product("D")])


def _features() -> ProductFeatures:
    text = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.8, 0.2, 0], [0, 0, 0]])
    image = torch.tensor([[0, 1.0], [1.0, 0], [0, 0], [0.6, 0.8]])
    return ProductFeatures(image, torch.tensor([True, True, False, True]), text, torch.tensor([True, True, True, False]))


def test_bm25_ranks_by_terms_and_never_returns_products_without_text():
    bm25 = RETRIEVERS.create("bm25").fit(_catalog(), _features())
    scores = bm25.scores(QueryBatch(["red wallet", "coffee mug"]))
    assert scores.shape == (2, 4) and np.argmax(scores[0]) == 0 and np.argmax(scores[1]) == 2
    assert np.isneginf(scores[:, 3]).all()  # D has no text
    assert not bm25.supports(QueryBatch(features={"image": torch.ones(1, 2)})) and bm25.product_scores() is None


def test_bm25_title_boost_puts_products_whose_title_names_the_query_first():
    from gnn_mmsearch.retrievers.bm25 import BM25Retriever

    catalog = Catalog([Product("A", title="travel mug", description="a gift card inside every gift card box " * 3),
                       Product("B", title="gift card"), Product("C", title="blue canvas bag")])
    query = QueryBatch(["gift card"])
    assert np.argmax(BM25Retriever().fit(catalog).scores(query)[0]) == 0  # the description repeats the words
    boosted = BM25Retriever(title_weight=2.0).fit(catalog)
    scores = boosted.scores(query)[0]
    assert np.argmax(scores) == 1 and scores[2] == 0.0
    boosted.title_weight = 0.0
    np.testing.assert_array_equal(boosted.scores(query), BM25Retriever().fit(catalog).scores(query))
    unfitted = BM25Retriever().fit(catalog)
    unfitted.title_weight = 1.0
    with pytest.raises(ValueError, match="without a title field"):
        unfitted.scores(query)
    with pytest.raises(ValueError, match="title_weight must be >= 0"):
        BM25Retriever(title_weight=-1.0)


def test_bm25_matches_one_character_words():
    catalog = Catalog([Product("A", title="Gift Cards, Multipack of 3"), Product("B", title="Gift Cards, Multipack of 4")])
    scores = RETRIEVERS.create("bm25").fit(catalog).scores(QueryBatch(["gift cards multipack 4"]))[0]
    assert scores[1] > scores[0]


def test_raw_feature_retriever_is_cosine_knn_over_present_features():
    raw = RETRIEVERS.create("raw", modalities=["image"]).fit(_catalog(), _features())
    scores = raw.scores(QueryBatch(features={"image": torch.tensor([[0.0, 2.0]])}))
    assert scores[0, 0] == pytest.approx(1.0) and np.isneginf(scores[0, 2]) and scores[0, 3] == pytest.approx(0.8)
    assert not raw.supports(QueryBatch(["text only"], {"text": torch.ones(1, 3)}))
    both = RETRIEVERS.create("raw", modalities=["text", "image"]).fit(_catalog(), _features())
    assert both.product_scores()(torch.tensor([0]), None).shape == (1, 4) and not np.isneginf(both.scores(QueryBatch(
        features={"text": torch.ones(1, 3), "image": torch.ones(1, 2)}))).any()
    with pytest.raises(ValueError, match="non-empty subset"):
        RETRIEVERS.create("raw", modalities=["audio"])


def test_reciprocal_rank_fusion():
    np.testing.assert_array_equal(ranks(np.array([[0.1, 0.9, -np.inf, 0.5]])), [[3, 1, np.inf, 2]])
    rrf = RETRIEVERS.create("rrf").fit(_catalog(), _features())  # default: BM25 + raw text
    queries = QueryBatch(["red wallet"], {"text": torch.tensor([[1.0, 0, 0]])})
    scores = rrf.scores(queries)
    assert np.argmax(scores[0]) == 0 and np.isneginf(scores[0, 3])
    assert scores[0, 0] == pytest.approx(2 / 61)  # first for both retrievers
    with pytest.raises(ValueError, match="2 retrievers but 1 weights"):
        RETRIEVERS.create("rrf", weights=[1.0])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Catalog:
    return generate(SyntheticConfig(num_products=150, num_users=5, image_size=32, seed=3), tmp_path_factory.mktemp("c"))


def test_fusion_weights_are_chosen_by_coordinate_ascent_until_a_pass_changes_nothing(monkeypatch):
    from types import SimpleNamespace

    import gnn_mmsearch.training.relevance as relevance

    hybrid = SimpleNamespace(bm25_weight=0.0, match_weight=1.0)
    calls = []

    def served(searcher, sets, ks):  # best at bm25 2 with match 0; bm25 1 is best while match is still 1
        calls.append((hybrid.bm25_weight, hybrid.match_weight))
        best = {1.0: 1.0, 0.0: 2.0}[hybrid.match_weight]
        return {"text_query/recall@10": 0.5 - abs(hybrid.bm25_weight - best) / 10 + (hybrid.match_weight == 0) / 10}

    monkeypatch.setattr(relevance, "evaluate_served", served)
    text = SimpleNamespace(name="text_query")
    chosen, metrics = relevance.choose_fusion_weights(SimpleNamespace(hybrid=hybrid), [text],
                                                      {"bm25": [0.0, 1.0, 2.0], "match": [0.0, 1.0]})
    assert chosen == {"bm25": 2.0, "match": 0.0} and (hybrid.bm25_weight, hybrid.match_weight) == (2.0, 0.0)
    assert metrics["text_query/recall@10"] == pytest.approx(0.6)
    assert len(calls) == 3 * 5  # pass 1 moves both weights, pass 2 moves bm25, pass 3 changes nothing


def test_attribute_queries_and_graded_relevance(synthetic):
    truth = ground_truth(synthetic)
    assert truth is not None and len(truth["material"]) == len(synthetic)
    queries = attribute_queries(truth, range(40), seed=0)
    assert queries and len({q.text for q in queries}) == len(queries)
    assert queries == attribute_queries(truth, range(40), seed=0)  # deterministic
    rel = relevance(queries, truth)
    for q, row in zip(queries, rel):
        assert 1 <= len(q.attributes) <= 2 and q.text.split()[-1] in " ".join(CATEGORIES[q.category][1]).lower()
        assert (row == 2).any() and set(np.unique(row)) <= {0, 1, 2}
        cats = np.array(truth["category"])
        assert ((row > 0) == (cats == q.category)).all()
    assert ground_truth(Catalog([Product("x")])) is None  # no ground truth: no attribute queries


def test_graded_metrics_use_gains_and_grade_two_recall():
    rel = np.array([[2, 1, 0, 2]])
    perfect = graded_metrics(torch.tensor([[0, 3, 1]]), rel, ks=(3,))
    assert perfect == pytest.approx({"ndcg@3": 1.0, "recall@3": 1.0})
    worse = graded_metrics(torch.tensor([[1, 0, 2]]), rel, ks=(3,))
    ideal = 3 + 3 / np.log2(3) + 1 / 2
    assert worse["ndcg@3"] == pytest.approx((1 + 3 / np.log2(3)) / ideal) and worse["recall@3"] == 0.5


def test_image_queries_are_augmented_deterministic_copies(synthetic, tmp_path):
    rows = range(30)
    paths, targets = image_queries(synthetic, rows, tmp_path / "a", seed=1)
    assert targets == [i for i in rows if synthetic.products[i].image_path] and len(paths) == len(targets)
    again, _ = image_queries(synthetic, rows, tmp_path / "b", seed=1)
    assert all(Image.open(p).tobytes() == Image.open(q).tobytes() for p, q in zip(paths, again))
    original = Image.open(synthetic.image_file(synthetic.products[targets[0]])).convert("RGB")
    assert Image.open(paths[0]).size == original.size and Image.open(paths[0]).tobytes() != original.tobytes()
    rng = np.random.default_rng(0)
    assert augment(original, rng).size == original.size


def test_hybrid_retrieval_fuses_the_heads_candidates_with_bm25(tmp_path):
    from gnn_mmsearch.index import create_index
    from gnn_mmsearch.models import RelevanceEncoder
    from gnn_mmsearch.retrievers.hybrid import HybridRetrieval

    torch.manual_seed(0)
    catalog, feats = _catalog(), _features()
    head = RelevanceEncoder(image_dim=2, text_dim=3, hidden_dim=8, out_dim=4).eval()
    query = {"text": feats.text[:1]}  # product A's own text features
    emb = head(feats.image, feats.image_mask, feats.text, feats.text_mask).detach().numpy()
    emb[0] = head.embed_query_features(**query).detach().numpy()[0]  # A is the head's first pick
    index = create_index("exact", dim=4)
    index.add(emb, catalog.ids)
    rows = catalog.index_of
    alone = HybridRetrieval(head, index, rows, depth=4).search(query, ["red wallet"], 4)
    bm25 = RETRIEVERS.create("bm25").fit(catalog, feats)
    fused = HybridRetrieval(head, index, rows, bm25, depth=4).search(query, ["red wallet"], 4)
    assert set(fused.ids[0]) == set(alone.ids[0])  # the head's depth holds every product: BM25 adds none
    assert fused.ids[0][0] == "A" and fused.scores[0][0] == pytest.approx(1.0)  # first for both: score 1
    assert np.all(np.diff(fused.scores[0]) <= 0)
    assert HybridRetrieval(head, index, rows, bm25, depth=4).search(query, None, 4).ids == alone.ids  # no text: head
    images = (torch.nn.functional.normalize(feats.image, dim=-1).numpy(), feats.image_mask.numpy())
    photo = {"image": feats.image[3:4]}  # D's photo: the raw cosine ranks D (then A, B by cosine; C has none)
    by_image = HybridRetrieval(head, index, rows, images=images, depth=4, image_weight=1e6).search(photo, None, 4)
    assert by_image.ids[0][0] == "D" and by_image.ids[0][-1] == "C"
    saved = RelevanceEncoder.from_pretrained(head.save_pretrained(tmp_path / "head"))
    torch.testing.assert_close(saved.embed_query_features(**query), head.embed_query_features(**query))


def test_relevance_head_needs_titled_training_products():
    from gnn_mmsearch.models import RelevanceEncoder
    from gnn_mmsearch.training.relevance import NoPseudoQueries, RelevanceTrainConfig, train_relevance

    untitled = Catalog([Product("A", description="only a description"), Product("B")])
    mask = torch.tensor([False, True])
    with pytest.raises(NoPseudoQueries, match="no training product has a title"):
        train_relevance(RelevanceEncoder(image_dim=2, text_dim=3), untitled, _features(), None, [], mask,
                        RelevanceTrainConfig(), seed=0)


def _head_index(head, catalog, feats, rows=None):
    from gnn_mmsearch.index import create_index

    emb = head(feats.image, feats.image_mask, feats.text, feats.text_mask).detach().numpy()
    index = create_index("exact", dim=emb.shape[1])
    rows = list(range(len(catalog))) if rows is None else rows
    index.add(emb[rows], [catalog.ids[r] for r in rows])
    return index


def test_image_queries_add_the_raw_image_knn_candidates():
    from gnn_mmsearch.models import RelevanceEncoder
    from gnn_mmsearch.retrievers.hybrid import HybridRetrieval

    torch.manual_seed(0)
    catalog, feats = _catalog(), _features()
    head = RelevanceEncoder(image_dim=2, text_dim=3, hidden_dim=8, out_dim=4).eval()
    index = _head_index(head, catalog, feats)
    images = (torch.nn.functional.normalize(feats.image, dim=-1).numpy(), feats.image_mask.numpy())
    photo = {"image": feats.image[3:4]}
    hybrid = HybridRetrieval(head, index, catalog.index_of, images=images, depth=1, image_weight=1.0)
    found = hybrid.search(photo, None, 1)
    assert "D" in found.ids[0]  # the raw image kNN's first pick joins the head's one candidate
    hybrid.image_weight = 100.0
    assert hybrid.search(photo, None, 1).ids[0][0] == "D"
    assert "D" not in hybrid.search(photo, None, 1, exclude=[["D"]]).ids[0]


def test_text_queries_add_bm25s_candidates():
    from gnn_mmsearch.models import RelevanceEncoder
    from gnn_mmsearch.retrievers.hybrid import HybridRetrieval

    torch.manual_seed(0)
    catalog, feats = _catalog(), _features()
    head = RelevanceEncoder(image_dim=2, text_dim=3, hidden_dim=8, out_dim=4).eval()
    index = _head_index(head, catalog, feats)
    query = {"text": feats.text[1:2]}
    bm25 = RETRIEVERS.create("bm25").fit(catalog, feats)
    hybrid = HybridRetrieval(head, index, catalog.index_of, bm25, depth=1, bm25_weight=100.0)
    head_pick = HybridRetrieval(head, index, catalog.index_of, depth=1).search(query, None, 1).ids[0][0]
    target, words = next((p, w) for p, w in (("A", "leather wallet"), ("B", "canvas bag"), ("C", "coffee mug"))
                         if p != head_pick)  # a product outside the head's one candidate
    assert hybrid.search(query, [words], 1).ids[0] == [target]  # BM25's first pick joins the pool, and wins
    assert target not in hybrid.search(query, [words], 1, exclude=[[target]]).ids[0]
    assert hybrid.search(query, ["zzz unknown"], 1).ids[0] == [head_pick]  # no BM25 match: nothing joins


def test_query_classifier_learns_product_types_and_lifts_them(tmp_path):
    from gnn_mmsearch.models import RelevanceEncoder
    from gnn_mmsearch.retrievers.hybrid import HybridRetrieval
    from gnn_mmsearch.training.relevance import fit_query_classifier

    torch.manual_seed(0)
    catalog = Catalog([Product("A", title="red wallet", category=["Wallets"]),
                       Product("B", title="red bag", category=["Bags"]),
                       Product("C", title="blue bag", category=["Bags"])])
    feats = ProductFeatures(torch.eye(3, 2), torch.ones(3, dtype=torch.bool),
                            torch.tensor([[1.0, 0.1, 0], [0.1, 1.0, 0.2], [0.0, 1.0, 0.5]]), torch.ones(3, dtype=torch.bool))
    head = RelevanceEncoder(image_dim=2, text_dim=3, hidden_dim=8, out_dim=4, categories=["Bags", "Wallets"]).eval()
    fit_query_classifier(head, feats.text, torch.tensor([0, 1, 2]), catalog)
    assert head.category_logits(feats.text).argmax(1).tolist() == [1, 0, 0]
    index = _head_index(head, catalog, feats)
    query = {"text": torch.tensor([[0.1, 1.0, 0.3]])}  # a "bag" query
    hybrid = HybridRetrieval(head, index, catalog.index_of, depth=3, types=np.array([1, 0, 0]),
                             category_weight=100.0)
    assert hybrid.search(query, ["red"], 3).ids[0][-1] == "A"  # the wallet last, whatever the head says
    saved = RelevanceEncoder.from_pretrained(head.save_pretrained(tmp_path / "head"))
    torch.testing.assert_close(saved.category_logits(feats.text), head.category_logits(feats.text))
    with pytest.raises(ValueError, match="no query classifier"):
        RelevanceEncoder(image_dim=2, text_dim=3, categories=["Bags"]).category_logits(feats.text)


def _image_word_catalog() -> tuple[Catalog, torch.Tensor, torch.Tensor]:
    """Red products (image cluster 0) say "red" or "crimson", blue ones (cluster 1) "blue"; the last product is
    red in its image and has no text; product 1 (outside training) alone says "secret"."""
    g = torch.Generator().manual_seed(0)
    products, images = [], []
    for i in range(40):
        red = i % 2 == 0
        products.append(Product(f"P{i}", title=("red" if i % 4 == 0 else "crimson") + " mug" if red else "blue mug",
                                description="secret secret" if i == 1 else None))
        images.append(torch.tensor([1.0, 0.0] if red else [0.0, 1.0]) + 0.05 * torch.randn(2, generator=g))
    products.append(Product("X"))
    images.append(torch.tensor([1.0, 0.0]))
    return Catalog(products), torch.stack(images), torch.ones(len(products), dtype=torch.bool)


def test_image_words_expand_documents_with_words_their_images_show():
    from gnn_mmsearch.retrievers.bm25 import BM25Retriever, product_document
    from gnn_mmsearch.retrievers.expansion import ImageWords

    catalog, images, has_image = _image_word_catalog()
    train = [i for i in range(40) if i != 1]  # product 1 and X are held out of the fit
    words = ImageWords.fit([product_document(p) for p in catalog.products], images, has_image, train, min_count=3)
    assert "secret" not in words.vocab and set(words.vocab) == {"red", "crimson", "blue", "mug"}
    expansions = words.expansions(top_k=5, min_prob=0.2)
    assert set(expansions[-1]) == {"red", "crimson", "mug"}  # the textless red product: every word its image shows
    assert expansions[0] == ["crimson"] and expansions[2] == ["red"]  # a colour's other name; never a word it has
    assert expansions[3] == []  # blue mug: nothing its text lacks
    assert words.expansions(top_k=1, min_prob=0.2)[-1] == [words.vocab[int(np.argmax(words.probs[-1]))]]

    plain = BM25Retriever().fit(catalog)
    expanded = BM25Retriever(expansions=expansions, expansion_weight=0.5).fit(catalog)
    query = QueryBatch(["red mug"])
    assert np.isneginf(plain.scores(query)[0, -1])  # no text: BM25 alone never finds it
    scores = expanded.scores(query)[0]
    assert np.isfinite(scores[-1]) and scores[-1] > scores[3]  # found by its image words, above a blue mug
    assert scores[0] > scores[2]  # "red" in the text counts more than "red" only from the image
    expanded.expansion_weight = 0.0
    np.testing.assert_array_equal(expanded.scores(query), plain.scores(query))
    with pytest.raises(ValueError, match="2 expansions for 41 products"):
        BM25Retriever(expansions=[[], []]).fit(catalog)


def _word_vectors(words: list[str]) -> np.ndarray:
    """A toy word encoder: 'crimson' is a synonym of 'red' (same vector), every other word its own axis."""
    axes = {"red": 0, "crimson": 0, "leather": 1, "wallet": 2, "blue": 3, "canvas": 4, "bag": 5, "mug": 6, "coffee": 7}
    out = np.zeros((len(words), 9), np.float32)
    for i, w in enumerate(words):
        out[i, axes.get(w, 8)] = 1.0
    return out


def test_term_match_is_the_mean_best_match_of_each_query_word():
    from gnn_mmsearch.retrievers.bm25 import product_document
    from gnn_mmsearch.retrievers.term_match import TermMatch

    catalog = _catalog()
    terms = TermMatch(_word_vectors, [product_document(p) for p in catalog.products])
    scores = terms.scores("crimson leather wallet", [0, 1, 2, 3])
    # A matches all three words (crimson ~ red), B none, C one (red), D has no text
    np.testing.assert_allclose(scores, [1.0, 0.0, 1 / 3, 0.0], atol=1e-6)
    assert terms.scores("the", [0]).tolist() == [0.0]  # a query of stopwords only
    np.testing.assert_allclose(terms.scores("crimson mug", [2]), [1.0])  # unseen query words are embedded and kept
    assert "crimson" in terms.row


def test_term_match_reads_saved_word_vectors_instead_of_embedding_again(tmp_path):
    from gnn_mmsearch.retrievers.bm25 import product_document
    from gnn_mmsearch.retrievers.term_match import TermMatch

    documents = [product_document(p) for p in _catalog().products]
    terms = TermMatch(_word_vectors, documents)
    terms.scores("crimson wallet", [0])
    terms.save(tmp_path / "terms.npz")
    embedded = []

    def counting(words):
        embedded.extend(words)
        return _word_vectors(words)

    again = TermMatch(counting, documents, tmp_path / "terms.npz")
    assert embedded == []  # every document word and the query word were saved
    np.testing.assert_allclose(again.scores("crimson leather wallet", [0, 1, 2, 3]), [1.0, 0.0, 1 / 3, 0.0], atol=1e-6)
    again.scores("teapot", [0])
    assert embedded == ["teapot"]


def test_hybrid_term_match_puts_the_product_matching_every_word_first():
    from gnn_mmsearch.index import create_index
    from gnn_mmsearch.models import RelevanceEncoder
    from gnn_mmsearch.retrievers.bm25 import product_document
    from gnn_mmsearch.retrievers.hybrid import HybridRetrieval
    from gnn_mmsearch.retrievers.term_match import TermMatch

    torch.manual_seed(0)
    catalog, feats = _catalog(), _features()
    head = RelevanceEncoder(image_dim=2, text_dim=3, hidden_dim=8, out_dim=4).eval()
    query = {"text": feats.text[2:3]}  # C's text features: the head ranks C first
    emb = head(feats.image, feats.image_mask, feats.text, feats.text_mask).detach().numpy()
    emb[2] = head.embed_query_features(**query).detach().numpy()[0]
    index = create_index("exact", dim=4)
    index.add(emb, catalog.ids)
    terms = TermMatch(_word_vectors, [product_document(p) for p in catalog.products])
    plain = HybridRetrieval(head, index, catalog.index_of, depth=4, terms=terms).search(query, ["red wallet"], 4)
    assert plain.ids[0][0] == "C"  # weight 0: the term match is off
    matched = HybridRetrieval(head, index, catalog.index_of, depth=4, terms=terms, match_weight=10.0).search(
        query, ["red wallet"], 4)
    assert matched.ids[0][0] == "A" and set(matched.ids[0]) == set(plain.ids[0])


def test_baselines_score_queries_a_block_at_a_time_with_the_same_result(monkeypatch):
    """Large catalogs: the baselines rank a few queries at a time (bounded memory); the metrics do not change."""
    import gnn_mmsearch.evaluation.query_sets as query_sets

    texts = ["red wallet", "coffee mug", "blue bag", "leather", "canvas bag"]
    features = {"text": torch.randn(5, 3, generator=torch.Generator().manual_seed(0))}
    sets = [query_sets.QuerySet("text_query", QueryBatch(texts, features), [0, 2, 1, 0, 1])]
    baselines = {"bm25": {"name": "bm25"}, "raw_text": {"name": "raw", "modalities": ["text"]},
                 "hybrid": {"name": "rrf", "retrievers": [{"name": "bm25"}, {"name": "raw", "modalities": ["text"]}]}}
    whole = query_sets.evaluate_baselines(baselines, _catalog(), _features(), sets, None, (1, 2))
    calls = []
    monkeypatch.setattr(query_sets, "block_rows", lambda n: calls.append(n) or 2)
    assert query_sets.evaluate_baselines(baselines, _catalog(), _features(), sets, None, (1, 2)) == whole
    assert calls == [4] and len(whole) == 12
    assert QueryBatch(texts, features).take(slice(3, 5)).texts == texts[3:]
