"""Retrievers a user would otherwise pick, scoring every product for a batch of queries: BM25 over the product
text, cosine kNN over the raw pretrained features, reciprocal rank fusion of several, and for product queries the
co-purchase graph's popularity and common neighbours. Every search run reports
them next to the trained model (``baseline/<name>/...``, ``eval.baselines``)."""
from . import bm25, copurchase, dense, fusion  # noqa: F401  (register the retrievers)
from ._retriever import RETRIEVERS, QueryBatch, Retriever

__all__ = ["RETRIEVERS", "QueryBatch", "Retriever"]
