"""Features of (query, candidate) pairs for ranking.

Columns (:data:`FEATURES`), with the default used when a value is missing (NaN, no data) and a 0/1 indicator:

* ``retrieval``: the index's fused cosine score (missing -> 0).
* ``text_sim`` / ``image_sim``: cosine of the query's and the product's raw text / image features, when both exist
  (missing -> 0, ``text_missing`` / ``image_missing`` = 1).
* ``graph``: ``log1p`` of the number of co-purchase links from the candidate to the query's anchor items (a user's
  history or a query product; no anchors -> 0).
* ``degree``: ``log1p`` of the candidate's co-purchase degree.
* ``popularity``, ``price``: ``log1p`` of the product field; ``rating`` as is (missing -> the catalog median,
  ``price_missing`` / ``rating_missing`` = 1).
* ``personal``: cosine of the user vector (see ``personalize.py``) and the candidate (cold user -> 0,
  ``personal_missing`` = 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..data.catalog import Catalog

FEATURES = ("retrieval", "text_sim", "image_sim", "graph", "degree", "popularity", "price", "rating", "personal",
            "text_missing", "image_missing", "price_missing", "rating_missing", "personal_missing")


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def unit_float16(x: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Rows of ``x`` scaled to unit norm (zero rows stay zero) in float32, kept as float16, a chunk at a time
    (``x`` may be a memory-mapped file larger than memory in float32)."""
    out = np.empty(x.shape, np.float16)
    for start in range(0, len(x), chunk):
        out[start:start + chunk] = _unit(np.asarray(x[start:start + chunk], np.float32))
    return out


def _with_default(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaNs replaced by the median of the rest (0 when all are NaN), and the missing mask."""
    missing = np.isnan(values)
    fill = float(np.median(values[~missing])) if (~missing).any() else 0.0
    return np.where(missing, fill, values).astype(np.float32), missing


@dataclass
class ItemTable:
    """Per-product arrays the features read, rows in catalog order."""

    row: dict[str, int]
    popularity: np.ndarray
    price: np.ndarray
    rating: np.ndarray
    price_missing: np.ndarray
    rating_missing: np.ndarray
    adjacency: sp.csr_matrix
    degree: np.ndarray
    modal: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (float16 unit rows, ok)

    @classmethod
    def from_catalog(cls, catalog: Catalog, edge_types: Sequence[str],
                     modal: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> "ItemTable":
        """``edge_types``: the links the ``graph`` / ``degree`` features count (the run's ``split.graph_edge_types``);
        ``modal``: optional raw product features per modality, ``name -> ([N, d], ok [N])`` (e.g. a run's saved
        ones, ``modal.load_modal``); kept as float16 unit rows."""
        def column(name):
            return np.array([np.nan if getattr(p, name) is None else getattr(p, name) for p in catalog.products],
                            np.float64)

        pop, _ = _with_default(np.log1p(np.clip(column("popularity"), 0, None)))
        price, price_missing = _with_default(np.log1p(np.clip(column("price"), 0, None)))
        rating, rating_missing = _with_default(column("rating"))
        n = len(catalog)
        ei = catalog.edge_index(edge_types).numpy()
        adj = sp.coo_matrix((np.ones(ei.shape[1] * 2, np.float32), (np.r_[ei[0], ei[1]], np.r_[ei[1], ei[0]])),
                            shape=(n, n)).tocsr()
        adj.data[:] = 1.0  # duplicate links count once
        modal = {k: (unit_float16(v), np.asarray(ok, bool)) for k, (v, ok) in (modal or {}).items()}
        return cls(dict(catalog.index_of), pop, price, rating, price_missing, rating_missing, adj,
                   np.log1p(np.asarray(adj.sum(1)).ravel()).astype(np.float32), modal)

    def rows(self, ids) -> np.ndarray:
        return np.array([self.row[i] for i in ids], np.int64)


@dataclass
class RankQuery:
    """What the features know about one query besides its candidates.

    ``anchors``: catalog rows linked in the graph score (history or query product); ``user``: unit user vector or
    ``None`` (cold); ``modal``: the query's raw features per modality (e.g. ``{"text": [d]}``).
    """

    anchors: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    user: np.ndarray | None = None
    modal: dict[str, np.ndarray] = field(default_factory=dict)


def build_features(table: ItemTable, rows: np.ndarray, retrieval: np.ndarray, vectors: np.ndarray,
                   query: RankQuery) -> np.ndarray:
    """``[C, len(FEATURES)]`` float32 features of candidates ``rows`` (their index ``vectors`` and scores)."""
    c = len(rows)
    out = np.zeros((c, len(FEATURES)), np.float32)
    col = {name: j for j, name in enumerate(FEATURES)}
    out[:, col["retrieval"]] = np.nan_to_num(np.asarray(retrieval, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    for name in ("text", "image"):
        q = query.modal.get(name)
        have = name in table.modal and q is not None and np.isfinite(q).all() and np.linalg.norm(q) > 0
        if have:
            feats, ok = table.modal[name]
            sim = feats[rows].astype(np.float32) @ (q / np.linalg.norm(q)).astype(np.float32)
            out[:, col[f"{name}_sim"]] = np.where(ok[rows], sim, 0.0)
            out[:, col[f"{name}_missing"]] = ~ok[rows]
        else:
            out[:, col[f"{name}_missing"]] = 1.0
    if len(query.anchors):
        hit = np.zeros(table.adjacency.shape[0], np.float32)
        hit[query.anchors] = 1.0
        out[:, col["graph"]] = np.log1p(table.adjacency[rows] @ hit)
    out[:, col["degree"]] = table.degree[rows]
    out[:, col["popularity"]] = table.popularity[rows]
    out[:, col["price"]] = table.price[rows]
    out[:, col["rating"]] = table.rating[rows]
    out[:, col["price_missing"]] = table.price_missing[rows]
    out[:, col["rating_missing"]] = table.rating_missing[rows]
    if query.user is not None and np.isfinite(query.user).all():
        out[:, col["personal"]] = np.nan_to_num(vectors @ query.user.astype(np.float32))
    else:
        out[:, col["personal_missing"]] = 1.0
    return out
