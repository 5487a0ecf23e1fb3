from .fusion import AttentionFusion, ConcatFusion, WeightedFusion, create_fusion, list_fusions, register_fusion
from .graph import GraphPropagation, list_convs, normalized_adjacency

__all__ = ["AttentionFusion", "ConcatFusion", "WeightedFusion", "create_fusion", "list_fusions", "register_fusion",
           "GraphPropagation", "list_convs", "normalized_adjacency"]
