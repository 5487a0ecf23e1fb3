"""The ranking stage of ``gnn-mmsearch run``: build the configured scorer, train it on user queries of train users
(a learned ranker), measure it on the test users, and build the pipeline a saved run serves.

The run keeps the products' raw text and image features in ``<run>/ranking_features`` (``modal.py``), and training,
the test-user metrics and serving all build their item table from that saved copy, so the ``text_sim`` /
``image_sim`` features a served query gets are computed exactly as in training (a user query's raw text features
come from the encoder's text extractor, as a served text query's do). Every training query is used twice, with the
user (history vector, co-purchase links) and as a cold user, so the ranker stays sound for users without a history.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..data.catalog import Catalog
from ..evaluation.queries import title_query
from ..features import ProductFeatures
from ..index import VectorIndex
from .dataset import (UserQuery, assert_no_leakage, candidate_lists, rank_query, split_users, training_examples,
                      user_queries)
from .evaluate import evaluate
from .features import ItemTable
from .ltr import create_ranker, load_ranker
from .modal import Modal, load_modal, product_modal, save_modal, split_query_features
from .personalize import Personalizer
from .pipeline import RankingPipeline
from .rules import RuleScorer

RANKER_DIR = "ranker"
log = logging.getLogger(__name__)


def wants_ranking(rerank) -> bool:
    return bool(rerank.get("ranker") or rerank.get("personalize"))


def user_personalizer(rerank) -> Personalizer:
    """How user vectors are built (``rerank.personalize``, attention by default); its weight is the blend weight."""
    return Personalizer(rerank.get("personalize") or "attention", float(rerank.get("personal_weight", 0.5)))


def build_pipeline(rerank, catalog: Catalog, ranker=None, modal: Modal | None = None) -> RankingPipeline:
    """The served pipeline: scorer from ``rerank.ranker`` (rules built here, learned ones passed in), the blend
    stage when ``rerank.personalize`` is set, MMR when ``rerank.mmr_lambda`` is; ``modal``: the products' raw
    features (``modal.load_modal``)."""
    if rerank.get("ranker") == "rules":
        r = rerank.get("rules") or {}
        ranker = RuleScorer(dict(r["weights"]) if r.get("weights") else None, r.get("min_rating"), r.get("max_price"))
    pers = user_personalizer(rerank) if rerank.get("personalize") else None
    return RankingPipeline(ItemTable.from_catalog(catalog, modal), ranker, pers, rerank.get("mmr_lambda"),
                           user_personalizer(rerank))


def load_pipeline(rerank: dict, catalog: Catalog, run_dir: Path) -> RankingPipeline | None:
    """The pipeline a saved run serves, or ``None`` when its rerank config has no ranking stage."""
    rerank = OmegaConf.create(rerank)
    if not wants_ranking(rerank):
        return None
    learned = rerank.get("ranker") not in (None, "rules")
    return build_pipeline(rerank, catalog, load_ranker(run_dir / RANKER_DIR) if learned else None,
                          load_modal(run_dir, len(catalog)))


def user_query_texts(catalog: Catalog, seed: int) -> list[tuple[UserQuery, str]]:
    """The catalog's user queries with their title-derived query texts (drawn with ``seed``), those without dropped."""
    rng = np.random.default_rng(seed)
    pairs = [(q, title_query(catalog.products[catalog.index_of[q.query_item]], rng)) for q in user_queries(catalog)]
    return [(q, text) for q, text in pairs if text]


def fit_ranking(rerank: DictConfig, model, index: VectorIndex, catalog: Catalog, feats: ProductFeatures, seed: int,
                run_dir: Path, k: int = 10) -> dict[str, float]:
    """Save the products' raw features ``feats`` (``run_dir/ranking_features``), train a learned ranker (saved in
    ``run_dir/ranker``) and return ``user_query/*`` metrics on test users: retrieval alone vs the configured pipeline
    (``user_query_ranked/*``). No user queries -> no metrics."""
    save_modal(product_modal(feats), run_dir)
    pairs = user_query_texts(catalog, seed)
    if len(pairs) < 10:
        log.warning("ranking: only %d user queries, stage skipped", len(pairs))
        return {}
    queries, texts = [q for q, _ in pairs], [t for _, t in pairs]
    query_features = model.query_features(text=texts)  # one extractor pass: the embedding and the raw features
    vectors = model.embed_queries(query_features).detach().numpy()
    row = {q.user: i for i, q in enumerate(queries)}
    train, test = split_users(queries, float(rerank.get("test_users", 0.3)), seed)
    assert_no_leakage(train, test)
    depth = int(rerank.candidates)
    pipe = build_pipeline(rerank, catalog, modal=load_modal(run_dir, len(catalog)))  # the table load_pipeline serves
    pers = pipe.users
    raw = split_query_features(query_features, pipe.table.modal)
    if rerank.get("ranker") not in (None, "rules"):
        qv = vectors[[row[q.user] for q in train]]
        cands = candidate_lists(index, train, qv, depth)
        rqs = [rank_query(pipe.table, index, q, v, raw[row[q.user]], p) for p in (pers, None)
               for q, v in zip(train, qv)]
        x, y, groups = training_examples(pipe.table, index, train + train, cands + cands, rqs)
        pipe.scorer = create_ranker(rerank.ranker, seed=seed, **(rerank.get("params") or {})).fit(x, y, groups)
        pipe.scorer.save(run_dir / RANKER_DIR)
    qv = vectors[[row[q.user] for q in test]]
    cands = candidate_lists(index, test, qv, depth)
    rqs = [rank_query(pipe.table, index, q, v, raw[row[q.user]], pers) for q, v in zip(test, qv)]
    categories = {p.id: p.category for p in catalog.products}
    targets = [q.targets for q in test]
    out = {}
    for name, p in (("user_query", RankingPipeline(pipe.table)), ("user_query_ranked", pipe)):
        m = evaluate(p, index, targets, cands, rqs, categories, k)
        out.update({f"{name}/{key}": m[key] for key in (f"ndcg@{k}", f"recall@{k}")})
    log.info("ranking: %d train / %d test users; %s", len(train), len(test), out)
    return out
