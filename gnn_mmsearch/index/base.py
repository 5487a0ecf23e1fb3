"""Vector index interface, registry and persistence.

:class:`VectorIndex` owns what every backend shares: string ids mapped to dense integer labels (freed labels are
reused), item attributes and filters, per-query exclusion, cosine normalisation and the file format. Backends
implement storage and top-k search over labels (``_reserve``, ``_add``, ``_delete``, ``_get``, ``_search``) plus
their own persistence (``_state`` / ``_load_state``).
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._registry import Registry
from . import _io
from .filters import AttributeStore, Filter

log = logging.getLogger(__name__)

METRICS = ("cosine",)
INDEXES: Registry[type["VectorIndex"]] = Registry("index")


def create_index(kind: str, dim: int, **kwargs) -> "VectorIndex":
    """Build an empty index of a registered ``kind`` (``exact``, ``hnsw``, ``hashing``, or one registered in
    :data:`INDEXES`)."""
    return INDEXES.create(kind, dim=dim, **kwargs)


def load_index(path: str | Path, dim: int | None = None, metric: str | None = None, **options) -> "VectorIndex":
    """Load an index saved with :meth:`VectorIndex.save`; ``dim`` / ``metric``, when given, must match the file.

    ``options`` override saved constructor parameters that do not change the index's content (e.g. ``num_threads``,
    ``ef``, ``storage``).
    """
    reader = _io.Reader(path)
    h = reader.header
    missing = [k for k in ("kind", "dim", "metric", "count", "params") if k not in h]
    if missing:
        raise ValueError(f"{path}: header lacks {', '.join(missing)}")
    for key, want in (("dim", dim), ("metric", metric)):
        if want is not None and h[key] != want:
            raise ValueError(f"{path}: index has {key}={h[key]!r} but {key}={want!r} was requested")
    index = INDEXES.get(h["kind"])(dim=h["dim"], metric=h["metric"], **{**h["params"], **options})
    index._restore(reader)
    if len(index) != h["count"]:
        raise ValueError(f"{path}: header says {h['count']} items, file holds {len(index)}")
    log.info("loaded %s index with %d items from %s", h["kind"], len(index), path)
    return index


@dataclass
class SearchResult:
    """Per query: ids and cosine scores (``float32`` arrays), best first."""

    ids: list[list[str]]
    scores: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


def as_matrix(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``x`` as a C-contiguous ``float32 [n, dim]`` array (a single vector becomes one row)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape [n, {dim}] or [{dim}], got {list(x.shape)}")
    return np.ascontiguousarray(x)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row of ``scores``, best first."""
    if k < scores.shape[1]:
        idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    vals = np.take_along_axis(scores, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


class VectorIndex(ABC):
    """Cosine-similarity index over vectors with string ids and optional attributes. Not thread-safe."""


    @property
    def kind(self) -> str:
        """The name this index class is registered under (saved in the file, used to load it back)."""
        return INDEXES.name_of(self)

    def __init__(self, dim: int, metric: str = "cosine"):
        if metric not in METRICS:
            raise ValueError(f"unsupported metric {metric!r}; supported: {', '.join(METRICS)}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim, self.metric = int(dim), metric
        self._ids: list[str | None] = []  # label -> id (None: free slot)
        self._labels: dict[str, int] = {}
        self._free: list[int] = []
        self._alive = np.zeros(0, bool)
        self._attrs = AttributeStore()

    # ----------------------------------------------------------------------------------------------- backend hooks
    @abstractmethod
    def _params(self) -> dict:
        """Constructor keyword arguments (besides ``dim``/``metric``) that rebuild an equivalent empty index; saved
        with the index, so machine-specific settings (paths) stay out."""

    @abstractmethod
    def _reserve(self, n: int) -> None:
        """Make room for labels ``0..n-1``."""

    @abstractmethod
    def _add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Store unit ``vectors`` at ``labels`` (new, reused or replaced)."""

    def _delete(self, labels: np.ndarray) -> None:
        """Forget ``labels``; backends that read the ``_alive`` mask need nothing."""

    @abstractmethod
    def _get(self, labels: np.ndarray) -> np.ndarray:
        """Stored unit vectors of live ``labels``."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` labels ``int64 [Q, k]`` (``-1`` pads) and cosine scores among live items (and ``mask`` if given).

        ``k`` never exceeds the number of eligible items; ``mask`` already excludes deleted labels.
        """

    @abstractmethod
    def _state(self, scratch: Path) -> dict[str, _io.Section]:
        """Sections to save (``scratch`` is a temporary directory for intermediate files)."""

    @abstractmethod
    def _load_state(self, reader: _io.Reader) -> None:
        """Restore backend state written by :meth:`_state` (bookkeeping is already restored)."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of RAM held by the search structure (vectors, graph links or codes); id/attribute bookkeeping and
        memory-mapped files excluded."""

    @property
    def mapped_bytes(self) -> int:
        """Bytes of vectors kept in a memory-mapped file (page cache / disk) rather than in :attr:`nbytes`."""
        return 0

    # ------------------------------------------------------------------------------------------------- public API
    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._labels

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}(dim={self.dim}, metric={self.metric!r}, {params}, count={len(self)})"

    @property
    def _n_slots(self) -> int:
        return len(self._ids)

    def add(self, vectors: np.ndarray, ids: Sequence[str], attributes: Sequence[dict | None] | None = None) -> None:
        """Add or replace items. ``attributes=None`` keeps the attributes of ids already present."""
        x = as_matrix(vectors, self.dim, "vectors")
        ids = [str(i) for i in ids]
        if len(ids) != len(x):
            raise ValueError(f"{len(x)} vectors but {len(ids)} ids")
        if attributes is not None and len(attributes) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(attributes)} attribute dicts")
        if len(set(ids)) != len(ids):
            dup = next(i for i, c in Counter(ids).items() if c > 1)
            raise ValueError(f"id {dup!r} appears more than once in one add() call")
        norms = np.linalg.norm(x, axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(bad):
            raise ValueError(f"vector for id {ids[bad[0]]!r} is zero or not finite; cosine is undefined")
        if not ids:
            return
        x = x / norms[:, None]

        new = [i for i in ids if i not in self._labels]
        reuse = self._free[len(self._free) - min(len(new), len(self._free)):][::-1]
        fresh = range(self._n_slots, self._n_slots + len(new) - len(reuse))
        assigned = dict(zip(new, [*reuse, *fresh]))
        labels = np.fromiter((self._labels.get(i, assigned.get(i)) for i in ids), np.int64, len(ids))
        self._reserve(self._n_slots + len(fresh))
        self._add(x, labels)  # may raise: bookkeeping is committed only afterwards

        del self._free[len(self._free) - len(reuse):]
        self._ids.extend([None] * len(fresh))
        for id_, label in assigned.items():
            self._ids[label], self._labels[id_] = id_, label
        if len(self._alive) < self._n_slots:
            grown = np.zeros(max(self._n_slots, 2 * len(self._alive)), bool)
            grown[:len(self._alive)] = self._alive
            self._alive = grown
        self._alive[labels] = True
        if attributes is not None:
            self._attrs.set(labels.tolist(), attributes)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns the number removed."""
        labels = np.fromiter((self._labels.pop(i) for i in dict.fromkeys(map(str, ids)) if i in self._labels), np.int64)
        if len(labels):
            self._delete(labels)
            self._alive[labels] = False
            self._attrs.clear(labels.tolist())
            for label in labels.tolist():
                self._ids[label] = None
            self._free.extend(labels.tolist())
        return len(labels)

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stored (unit) vectors ``float32 [n, dim]`` of ``ids``; raises ``KeyError`` for an unknown id."""
        try:
            labels = np.fromiter((self._labels[str(i)] for i in ids), np.int64)
        except KeyError as e:
            raise KeyError(f"id {e.args[0]!r} is not in the index") from None
        return self._get(labels) if len(labels) else np.empty((0, self.dim), np.float32)

    def admits(self, ids: Sequence[str], filter: Filter | None) -> np.ndarray:
        """Whether each of ``ids`` (in the index) passes ``filter``."""
        labels = np.fromiter((self._labels[str(i)] for i in ids), np.int64)
        if filter is None or filter.is_empty:
            return np.ones(len(labels), bool)
        return self._attrs.mask(filter, self._n_slots)[labels]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter: Filter | str | None = None,
        exclude: Sequence[Sequence[str] | str] | None = None,
    ) -> SearchResult:
        """Top-``k`` items per query by cosine similarity.

        ``filter`` (a :class:`Filter` or a string for :meth:`Filter.parse`) restricts the candidates; ``exclude[q]``
        lists ids never returned for query ``q`` (a bare string is one id). Fewer than ``k`` results come back only
        when fewer than ``k`` eligible items exist.
        """
        q = l2_normalize(as_matrix(queries, self.dim, "queries"))
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        excluded = None
        if exclude is not None:
            if len(exclude) != len(q):
                raise ValueError(f"exclude has {len(exclude)} entries for {len(q)} queries")
            excluded = [{e} if isinstance(e, str) else set(map(str, e)) for e in exclude]
        if isinstance(filter, str):
            filter = Filter.parse(filter)
        mask = None
        if filter is not None and not filter.is_empty:
            mask = self._attrs.mask(filter, self._n_slots) & self._alive[:self._n_slots]
        eligible = len(self) if mask is None else int(mask.sum())
        k_fetch = min((k + max(map(len, excluded), default=0)) if excluded else k, eligible)
        if k_fetch == 0:
            return SearchResult([[] for _ in q], [np.empty(0, np.float32) for _ in q])
        labels, scores = self._search(q, k_fetch, mask)
        out_ids, out_scores = [], []
        for i in range(len(q)):
            row_ids, keep = [], []
            for j, label in enumerate(labels[i].tolist()):
                if len(row_ids) == k:
                    break
                if label < 0 or (excluded and self._ids[label] in excluded[i]):
                    continue
                row_ids.append(self._ids[label])
                keep.append(j)
            out_ids.append(row_ids)
            out_scores.append(np.asarray(scores[i][keep], np.float32))
        return SearchResult(out_ids, out_scores)

    # ------------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the index to the single file ``path`` atomically (the previous file survives any crash)."""
        path = Path(path)
        header = {"kind": self.kind, "dim": self.dim, "metric": self.metric, "count": len(self),
                  "params": self._params()}
        with _io.scratch_dir(path) as scratch:
            sections = {"ids": self._ids, **self._attrs.state(self._n_slots), **self._state(scratch)}
            _io.write(path, header, sections)
        log.info("saved %s index with %d items to %s", self.kind, len(self), path)

    def _restore(self, reader: _io.Reader) -> None:
        self._ids = reader.json("ids")
        self._labels = {id_: label for label, id_ in enumerate(self._ids) if id_ is not None}
        self._free = [label for label, id_ in enumerate(self._ids) if id_ is None][::-1]
        self._alive = np.array([id_ is not None for id_ in self._ids], bool)
        self._attrs = AttributeStore.from_state(reader.array("attr.price"), reader.array("attr.in_stock"),
                                                reader.json("attr.category"))
        self._load_state(reader)
