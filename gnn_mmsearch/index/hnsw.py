"""HNSW graph index on hnswlib (cosine space).

Labels are the base class's dense slots. A deleted item is ``mark_deleted``; when its slot is reused, ``add_items``
with the same label updates that graph node in place and unmarks it, so capacity is reused without
``replace_deleted`` (which moves an arbitrary deleted node to the new label and breaks the label map if labels are
recycled, as they are here).

Filters run inside the graph search through hnswlib's ``filter=`` callback on labels (a byte lookup in the precomputed
mask); hnswlib keeps exploring until it holds ``ef`` matching items, so ``ef`` is raised to at least ``k``. The cost
of that grows like ``n / matches`` while exact search over the matches costs ``matches``, so filters matching at most
``exact_below * sqrt(n)`` items are answered exactly, as is any query the graph search cannot fill.

hnswlib's ``get_items`` copies row by row (~15 us a vector), too slow for that fallback or for ``vectors()``, so a
copy of the unit vectors is kept in a memory-mapped file (page cache, not heap; see ``_io.MappedRows``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import hnswlib
import numpy as np

from . import _io
from .base import INDEXES, VectorIndex, topk

log = logging.getLogger(__name__)


@INDEXES.register("hnsw")
class HNSWIndex(VectorIndex):
    """Approximate index on an HNSW graph.

    Args:
        M: graph degree (links per node on upper layers, ``2*M`` on the bottom one).
        ef_construction: candidate list size while building.
        ef: candidate list size while searching (raised to ``k`` when smaller).
        capacity: initial number of slots; the graph is resized (doubled) as needed.
        num_threads: hnswlib threads for adding and unfiltered search (``-1``: all cores).
        exact_below: filtered queries matching at most ``exact_below * sqrt(len(index))`` items are answered by
            exact search over the matches.
        storage: directory for the scratch vector file (default: the system temp dir); a loaded index maps its
            saved file until the first write.
        seed: hnswlib random seed (level assignment).
    """

    def __init__(self, dim: int, metric: str = "cosine", M: int = 16, ef_construction: int = 200, ef: int = 64,
                 capacity: int = 1024, num_threads: int = -1, exact_below: float = 20.0, storage: str | None = None,
                 seed: int = 100):
        super().__init__(dim, metric)
        self.M, self.ef_construction, self.ef, self.capacity = M, ef_construction, ef, capacity
        self.num_threads, self.exact_below, self.storage, self.seed = num_threads, exact_below, storage, seed
        self._rows = _io.MappedRows(dim, storage)
        self._graph = hnswlib.Index(space="cosine", dim=dim)
        self._graph.init_index(max_elements=max(1, capacity), M=M, ef_construction=ef_construction, random_seed=seed)

    def _params(self) -> dict:
        return {"M": self.M, "ef_construction": self.ef_construction, "ef": self.ef, "capacity": self.capacity,
                "num_threads": self.num_threads, "exact_below": self.exact_below, "seed": self.seed}

    @property
    def nbytes(self) -> int:
        return self._graph.index_file_size()

    @property
    def mapped_bytes(self) -> int:
        return self._n_slots * self.dim * 4

    def _reserve(self, n: int) -> None:
        cap = self._graph.get_max_elements()
        if n > cap:
            self._graph.resize_index(max(n, 2 * cap))
            log.debug("hnsw graph resized from %d to %d slots", cap, self._graph.get_max_elements())
        self._rows.reserve(n)

    def _add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        self._graph.add_items(vectors, labels, num_threads=self.num_threads)
        self._rows.write(labels, vectors)

    def _delete(self, labels: np.ndarray) -> None:
        for label in labels.tolist():
            self._graph.mark_deleted(label)

    def _get(self, labels: np.ndarray) -> np.ndarray:
        return np.asarray(self._rows.array[labels])

    def _exact(self, queries: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(mask)
        idx, scores = topk(queries @ self._get(rows).T, k)
        return rows[idx], scores

    def _search(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        matches = len(self) if mask is None else int(mask.sum())
        if mask is not None and matches <= self.exact_below * len(self) ** 0.5:
            return self._exact(queries, k, mask)
        self._graph.set_ef(max(self.ef, k))
        kwargs = {"num_threads": self.num_threads}
        if mask is not None:
            allowed = mask.tobytes()
            kwargs = {"num_threads": 1, "filter": allowed.__getitem__}  # the callback holds the GIL anyway
        try:
            labels, dist = self._graph.knn_query(queries, k=k, **kwargs)
            return labels.astype(np.int64), 1.0 - dist
        except RuntimeError:  # some query found fewer than k (sparse matches / heavy deletion): answer it exactly
            log.debug("hnsw search could not fill k=%d for a batch; answering query by query", k)
        labels = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        for i, q in enumerate(queries):
            try:
                lab, dist = self._graph.knn_query(q[None], k=k, **kwargs)
                labels[i], scores[i] = lab[0], 1.0 - dist[0]
            except RuntimeError:
                lab, sc = self._exact(q[None], k, self._alive[:self._n_slots] if mask is None else mask)
                labels[i], scores[i] = lab[0], sc[0]
        return labels, scores

    def _state(self, scratch: Path) -> dict[str, _io.Section]:
        graph = scratch / "graph.hnsw"
        self._graph.save_index(str(graph))
        return {"graph": _io.RawFile(graph, graph.stat().st_size), "vectors": self._rows.section(self._n_slots)}

    def _load_state(self, reader: _io.Reader) -> None:
        graph = hnswlib.Index(space="cosine", dim=self.dim)
        with reader.extracted("graph") as path:
            graph.load_index(str(path))
        self._graph = graph
        self._rows = _io.MappedRows(self.dim, self.storage, source=reader.array("vectors", mmap=True))
