from .queries import title_queries
from .retrieval import RetrievalMetrics, evaluate_copurchase, evaluate_queries, top_k

__all__ = ["RetrievalMetrics", "evaluate_copurchase", "evaluate_queries", "title_queries", "top_k"]
