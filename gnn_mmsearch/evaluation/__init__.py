from .crossmodal import evaluate_title_to_image, image_only_embeddings
from .queries import title_queries
from .retrieval import RetrievalMetrics, evaluate_copurchase, evaluate_queries, top_k
from .served import list_metrics, served_query_metrics
from .table import format_metrics

__all__ = ["RetrievalMetrics", "evaluate_copurchase", "evaluate_queries", "evaluate_title_to_image",
           "format_metrics", "image_only_embeddings", "list_metrics", "served_query_metrics", "title_queries", "top_k"]
