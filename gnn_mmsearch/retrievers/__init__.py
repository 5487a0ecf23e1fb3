"""Retrievers a user would otherwise pick, scoring every product for a batch of queries: BM25 over the product
text, cosine kNN over the raw pretrained features, and reciprocal rank fusion of several. Every search run reports
them next to the trained model (``baseline/<name>/...``, ``eval.baselines``)."""
from . import bm25, dense, fusion  # noqa: F401  (register the retrievers)
from ._retriever import RETRIEVERS, QueryBatch, Retriever

__all__ = ["RETRIEVERS", "QueryBatch", "Retriever"]
