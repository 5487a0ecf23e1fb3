"""Vector indexes for retrieval: ``exact`` (ground truth), ``hnsw`` (graph ANN) and ``hashing`` (binary codes).

    index = create_index("hnsw", dim=128, M=16, ef_construction=200, ef=64)
    index.add(vectors, ids, attributes)
    result = index.search(queries, k=10, filter=Filter.parse("category=Phones;price<=100"))
    index.save("catalog.idx"); index = load_index("catalog.idx", dim=128)
"""
from .base import SearchResult, VectorIndex, create_index, list_indexes, load_index, register_index
from .exact import ExactIndex
from .filters import Filter
from .hashing import HashingIndex
from .hnsw import HNSWIndex

__all__ = [
    "ExactIndex",
    "Filter",
    "HNSWIndex",
    "HashingIndex",
    "SearchResult",
    "VectorIndex",
    "create_index",
    "list_indexes",
    "load_index",
    "register_index",
]
