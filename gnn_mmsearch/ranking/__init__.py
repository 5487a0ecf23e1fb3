"""Ranking after retrieval: features, rule-based and learned rankers, personalization, diversification, and the
staged pipeline that serves every query."""
from . import ltr, rules  # noqa: F401  (register the rankers)
from ._ranker import RANKERS, create_ranker, load_ranker
from .diversify import mmr
from .features import FEATURES, ItemTable, RankQuery, build_features
from .personalize import Personalizer, user_vector
from .pipeline import Ranked, RankingPipeline, build_pipeline, load_pipeline

__all__ = ["RANKERS", "create_ranker", "load_ranker", "mmr", "FEATURES", "ItemTable", "RankQuery", "build_features",
           "Personalizer", "user_vector", "Ranked", "RankingPipeline", "build_pipeline", "load_pipeline"]
