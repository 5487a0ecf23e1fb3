from . import bpr, freedom, layergcn, lgmrec, lightgcn, mmgraph, xsimgcl  # noqa: F401  (register the recommenders)
from ._recommender import RECOMMENDERS, Recommender, create_recommender
from .encoder import EncoderConfig, MultimodalGraphEncoder
from .relevance import RelevanceConfig, RelevanceEncoder

__all__ = ["EncoderConfig", "MultimodalGraphEncoder", "RECOMMENDERS", "Recommender", "RelevanceConfig", "RelevanceEncoder",
           "create_recommender"]
