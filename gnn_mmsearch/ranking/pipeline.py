"""The staged ranking pipeline every served query goes through: retrieve -> score -> personalize -> diversify.

Retrieval is the index's top ``candidates`` (the caller searches, see ``Searcher.serve``); the score stage is a
ranker (rules or a learned one), personalization blends in the user's affinity, diversification is MMR on the
min-max normalised final score. Every stage but retrieval is optional: with none configured the pipeline returns
the index's order and needs only the top ``k``. :class:`Ranked` keeps each stage's score per result.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..data.catalog import Catalog
from ._ranker import create_ranker, is_learned, load_ranker
from .diversify import mmr
from .features import ItemTable, RankQuery, build_features
from .modal import Modal, load_modal
from .personalize import Personalizer, minmax


@dataclass
class Ranked:
    ids: list[str]
    stages: dict[str, np.ndarray]  # stage name -> score of each returned id: retrieval, score, personal, final


class RankingPipeline:
    def __init__(self, table: ItemTable, scorer=None, personalizer: Personalizer | None = None,
                 mmr_lambda: float | None = None, candidates: int = 100, users: Personalizer | None = None):
        """``scorer``: anything with ``score(features) -> [C]``; ``personalizer``: the blend stage; ``mmr_lambda``:
        the diversify stage (``None`` or 1: off); ``candidates``: how many the index retrieves for the later
        stages; ``users``: how user vectors are built (default: the personalizer's method, else attention)."""
        if mmr_lambda is not None and not 0 <= mmr_lambda <= 1:
            raise ValueError(f"mmr_lambda must be in [0, 1], got {mmr_lambda}")
        self.table, self.scorer, self.personalizer, self.mmr_lambda = table, scorer, personalizer, mmr_lambda
        self.candidates = candidates
        self.users = users or personalizer or Personalizer()

    def lambda_for(self, mmr_lambda: float | None) -> float | None:
        """The MMR lambda a query is served with (``mmr_lambda`` overrides the configured one; 1 means off)."""
        lam = self.mmr_lambda if mmr_lambda is None else mmr_lambda
        if lam is not None and not 0 <= lam <= 1:
            raise ValueError(f"mmr_lambda must be in [0, 1], got {lam}")
        return None if lam is None or lam >= 1 else lam

    def depth(self, k: int, mmr_lambda: float | None = None) -> int:
        """How many candidates to retrieve for a top-``k`` list: ``k`` when no stage reorders them."""
        reorders = self.scorer is not None or self.personalizer is not None or self.lambda_for(mmr_lambda) is not None
        return max(k, self.candidates) if reorders else k

    def query(self, vector: np.ndarray, item_vectors, items: Sequence[str] = (), personal: bool = False,
              modal: Mapping[str, np.ndarray] | None = None) -> RankQuery:
        """The :class:`RankQuery` of one query, for training and serving alike.

        ``items``: the query's anchor products (the query product, a history or a user's items; unknown ids are
        skipped); ``personal``: build the user vector from them (history and user queries); ``item_vectors``:
        ``ids -> [n, d]`` stored vectors (``index.vectors``); ``modal``: the query's raw features.
        """
        items = [i for i in items if i in self.table.row]
        user = self.users.user(item_vectors(items), vector) if personal and items else None
        return RankQuery(anchors=self.table.rows(items), user=user, modal=dict(modal or {}))

    def rank(self, ids: list[str], retrieval: np.ndarray, vectors: np.ndarray, query: RankQuery, k: int,
             mmr_lambda: float | None = None) -> Ranked:
        """Top ``k`` of the candidates ``ids`` (index scores ``retrieval``, unit ``vectors``) for ``query``."""
        lam = self.lambda_for(mmr_lambda)
        retrieval = np.nan_to_num(np.asarray(retrieval, np.float32), nan=0.0)
        stages = {"retrieval": retrieval}
        score = retrieval
        if self.scorer is not None and len(ids):
            x = build_features(self.table, self.table.rows(ids), retrieval, vectors, query)
            score = stages["score"] = np.asarray(self.scorer.score(x), np.float32)
        if self.personalizer is not None and query.user is not None:
            score = stages["personal"] = self.personalizer(score, vectors, query.user)
        stages["final"] = score
        if lam is not None and len(ids):
            rel = minmax(np.where(np.isfinite(score), score, np.nan))
            rel[~np.isfinite(score)] = -1.0  # filtered candidates come last
            order = mmr(rel, vectors, k, lam)
        else:
            order = np.argsort(-score, kind="stable")[:k]
        order = order[np.isfinite(score[order])]  # hard filters drop candidates
        return Ranked([ids[i] for i in order], {name: s[order] for name, s in stages.items()})


def wants_ranker(ranking: Mapping) -> bool:
    return bool(ranking.get("ranker"))


def build_pipeline(ranking: Mapping, catalog: Catalog, edge_types: Sequence[str], modal: Modal | None = None,
                   ranker=None) -> RankingPipeline:
    """The pipeline a ``ranking`` config describes: the scorer (``ranker`` when given: a trained one; else built
    from ``ranking.ranker`` unless it is a learned kind, which training fills in), the blend stage when
    ``ranking.personalize`` is set, MMR when ``ranking.mmr_lambda`` is; ``modal``: the products' raw features."""
    name = ranking.get("ranker")
    if ranker is None and name and not is_learned(name):
        ranker = create_ranker(name, **dict(ranking.get("ranker_kwargs") or {}))
    users = Personalizer(ranking.get("personalize") or "attention", float(ranking.get("personal_weight", 0.5)))
    blend = users if ranking.get("personalize") else None
    return RankingPipeline(ItemTable.from_catalog(catalog, list(edge_types), modal), ranker, blend,
                           ranking.get("mmr_lambda"), int(ranking.get("candidates", 100)), users)


def load_pipeline(ranking: Mapping, catalog: Catalog, edge_types: Sequence[str], ranker_dir: Path,
                  features_dir: Path) -> RankingPipeline:
    """The pipeline a saved run serves (its trained ranker from ``ranker_dir``, raw features from ``features_dir``)."""
    learned = wants_ranker(ranking) and is_learned(ranking["ranker"])
    modal = load_modal(features_dir, len(catalog)) if wants_ranker(ranking) or ranking.get("personalize") else None
    return build_pipeline(ranking, catalog, edge_types, modal, load_ranker(ranker_dir) if learned else None)
