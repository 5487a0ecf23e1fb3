"""Ranking after retrieval: features, rule-based and learned scorers, personalization, the staged pipeline."""
from .features import FEATURES, ItemTable, RankQuery, build_features
from .ltr import LambdaMART, RankSVM, load_ranker
from .personalize import Personalizer, user_vector
from .pipeline import RankingPipeline, Ranked
from .rules import RuleScorer

__all__ = ["FEATURES", "ItemTable", "RankQuery", "build_features", "LambdaMART", "RankSVM", "load_ranker",
           "Personalizer", "user_vector", "RankingPipeline", "Ranked", "RuleScorer"]
