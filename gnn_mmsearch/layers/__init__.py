from .fusion import FUSIONS, AttentionFusion, ConcatFusion, WeightedFusion
from .graph import CONVS, GraphPropagation, normalized_adjacency

__all__ = ["FUSIONS", "AttentionFusion", "ConcatFusion", "WeightedFusion", "CONVS", "GraphPropagation",
           "normalized_adjacency"]
