from . import bpr, lightgcn, mmgraph  # noqa: F401  (register the recommenders)
from ._recommender import Recommender, create_recommender, list_recommenders
from .encoder import EncoderConfig, MultimodalGraphEncoder

__all__ = ["EncoderConfig", "MultimodalGraphEncoder", "Recommender", "create_recommender", "list_recommenders"]
