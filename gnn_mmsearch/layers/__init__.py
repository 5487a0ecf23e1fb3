from .fusion import FUSIONS, AttentionFusion, ConcatFusion, WeightedFusion
from .graph import CONVS, GraphPropagation, csr_tensor, knn_graph, normalized_adjacency, spmm

__all__ = ["FUSIONS", "AttentionFusion", "ConcatFusion", "WeightedFusion", "CONVS", "GraphPropagation",
           "csr_tensor", "knn_graph", "normalized_adjacency", "spmm"]
