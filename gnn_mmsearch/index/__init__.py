"""Vector indexes for retrieval: ``exact`` (ground truth), ``hnsw`` (graph ANN), ``hashing`` (binary codes) and
``faiss`` (inverted lists: IVF-Flat, IVF-PQ with exact re-scoring; for millions of vectors).

    index = create_index("hnsw", dim=128, M=16, ef_construction=200, ef=64)
    index.add(vectors, ids, attributes)
    result = index.search(queries, k=10, filter=Filter.parse("category=Phones;price<=100"))
    index.save("catalog.idx"); index = load_index("catalog.idx", dim=128)

A new kind: subclass ``VectorIndex`` and decorate it with ``@INDEXES.register("name")`` (then ``index.kind=name``).
"""
from .base import INDEXES, SearchResult, VectorIndex, create_index, load_index
from .exact import ExactIndex
from .faiss_ivf import FaissIVFIndex
from .filters import Filter
from .hashing import HashingIndex
from .hnsw import HNSWIndex

__all__ = [
    "INDEXES",
    "ExactIndex",
    "FaissIVFIndex",
    "Filter",
    "HNSWIndex",
    "HashingIndex",
    "SearchResult",
    "VectorIndex",
    "create_index",
    "load_index",
]
