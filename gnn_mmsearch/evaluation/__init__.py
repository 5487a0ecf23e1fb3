from .queries import title_queries
from .retrieval import RetrievalMetrics, evaluate_copurchase, evaluate_queries, top_k
from .served import list_metrics, served_metrics, top_lists

__all__ = ["RetrievalMetrics", "evaluate_copurchase", "evaluate_queries", "list_metrics", "served_metrics",
           "title_queries", "top_k", "top_lists"]
