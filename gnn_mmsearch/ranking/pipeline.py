"""The staged ranking pipeline: retrieval scores -> score (rules or a learned ranker) -> personalize -> MMR.

Every stage but retrieval is optional; :class:`Ranked` keeps each stage's score per result (``--explain-scores``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rerank.mmr import mmr
from .features import ItemTable, RankQuery, build_features
from .personalize import Personalizer, minmax


@dataclass
class Ranked:
    ids: list[str]
    stages: dict[str, np.ndarray]  # stage name -> score of each returned id: retrieval, score, personal, final


class RankingPipeline:
    def __init__(self, table: ItemTable, scorer=None, personalizer: Personalizer | None = None,
                 mmr_lambda: float | None = None, users: Personalizer | None = None):
        """``scorer``: anything with ``score(features) -> [C]`` (:class:`RuleScorer`, LambdaMART, RankSVM);
        ``personalizer``: the blend stage; ``users``: how callers build user vectors (default: the personalizer's
        method, else attention)."""
        self.table, self.scorer, self.personalizer, self.mmr_lambda = table, scorer, personalizer, mmr_lambda
        self.users = users or personalizer or Personalizer()

    def rank(self, ids: list[str], retrieval: np.ndarray, vectors: np.ndarray, query: RankQuery, k: int,
             mmr_lambda: float | None = None) -> Ranked:
        """Top ``k`` of the candidates ``ids`` (index scores ``retrieval``, unit ``vectors``) for ``query``;
        ``mmr_lambda`` overrides the pipeline's."""
        lam = self.mmr_lambda if mmr_lambda is None else mmr_lambda
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
