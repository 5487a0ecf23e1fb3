"""The ranking stage of the search job: train a learned ranker on user queries of train users and measure the
served pipeline on test users.

The run keeps the products' raw text and image features (``<run>/ranking_features``, ``ranking/modal.py``), and
training, the test-user metrics and serving all build their item table from that saved copy, so the ``text_sim`` /
``image_sim`` features a served query gets are computed exactly as in training. Training builds each query's
:class:`~gnn_mmsearch.ranking.RankQuery` with the pipeline's own ``query`` (as ``Searcher`` does) and the test
metrics score the lists ``Searcher.serve`` returns. Every training query is used twice, with the user (history
vector, co-purchase links) and as a cold user, so the ranker stays sound for users without a history.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from ..data.catalog import Catalog
from ..evaluation.queries import title_query
from ..evaluation.served import list_metrics
from ..ranking import RankingPipeline, build_pipeline, create_ranker
from ..ranking._ranker import is_learned
from ..ranking.modal import load_modal, split_query_features
from ..search import Searcher
from ._user_queries import UserQuery, assert_no_leakage, split_users, training_examples, user_queries

log = logging.getLogger(__name__)


def user_query_texts(catalog: Catalog, seed: int) -> list[tuple[UserQuery, str]]:
    """The catalog's user queries with their title-derived query texts (drawn with ``seed``), those without dropped."""
    rng = np.random.default_rng(seed)
    pairs = [(q, title_query(catalog.products[catalog.index_of[q.query_item]], rng)) for q in user_queries(catalog)]
    return [(q, text) for q, text in pairs if text]


def fit_ranking(ranking: Mapping, searcher: Searcher, seed: int, ranker_dir: Path,
                features_dir: Path, k: int = 10) -> dict[str, float]:
    """Give ``searcher`` the configured pipeline (the products' raw features read from ``features_dir``), train a
    learned ranker (saved in ``ranker_dir``), and return ``user_query/*`` metrics on test users, retrieval
    alone vs the pipeline (``user_query_ranked/*``). Fewer than 10 user queries: no ranker is trained, no metrics."""
    model, index, catalog = searcher.encoder, searcher.index, searcher.catalog
    pipe = build_pipeline(ranking, catalog, model.config.graph_edge_types, load_modal(features_dir, len(catalog)))
    searcher.pipeline = pipe
    pairs = user_query_texts(catalog, seed)
    if len(pairs) < 10:
        log.warning("ranking: only %d user queries, no ranker trained and no user_query metrics", len(pairs))
        return {}
    queries, texts = [q for q, _ in pairs], [t for _, t in pairs]
    raw = model.query_features(text=texts)  # one extractor pass: the embedding and the raw features
    vectors = model.embed_queries(raw).detach().numpy()
    modal = split_query_features(raw, pipe.table.modal)
    row = {q.user: i for i, q in enumerate(queries)}
    train, test = split_users(queries, float(ranking.get("test_users", 0.3)), seed)
    assert_no_leakage(train, test)
    if ranking.get("ranker") and is_learned(ranking["ranker"]):
        rows = [row[q.user] for q in train]
        qv = vectors[rows]
        found = searcher.retrieve(qv, pipe.candidates, exclude=[q.history for q in train],
                                  features={m: x[rows] for m, x in raw.items()}, texts=[texts[r] for r in rows])
        cands = list(zip(found.ids, found.scores))
        rqs = [pipe.query(v, index.vectors, q.history if personal else (), personal, modal[row[q.user]])
               for personal in (True, False) for q, v in zip(train, qv)]
        x, y, groups = training_examples(pipe.table, index, train + train, cands + cands, rqs)
        pipe.scorer = create_ranker(ranking["ranker"], seed, **dict(ranking.get("ranker_kwargs") or {}))
        pipe.scorer.fit(x, y, groups).save(ranker_dir)
    rows = [row[q.user] for q in test]
    qv = vectors[rows]
    rqs = [pipe.query(v, index.vectors, q.history, True, modal[row[q.user]]) for q, v in zip(test, qv)]
    retrieval_only = Searcher(model, index, catalog, RankingPipeline(pipe.table, candidates=pipe.candidates),
                              searcher.hybrid, searcher.copurchase)
    served_as = {"features": {m: x[rows] for m, x in raw.items()}, "texts": [texts[r] for r in rows]}
    categories = {p.id: p.category for p in catalog.products}
    out = {}
    for name, served in (("user_query", retrieval_only), ("user_query_ranked", searcher)):
        lists = [r.ids for r in served.serve(qv, rqs, k, exclude=[q.history for q in test], **served_as)]
        m = list_metrics(lists, [q.targets for q in test], index, categories, k)
        out.update({f"{name}/{key}": m[key] for key in (f"ndcg@{k}", f"recall@{k}")})
    log.info("ranking: %d train / %d test users; %s", len(train), len(test), out)
    return out
