"""Exact (brute-force) index: one matrix product per block of queries. The ground truth for the others."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import _io
from .base import INDEXES, VectorIndex


@INDEXES.register("exact")
class ExactIndex(VectorIndex):
    """All vectors in one ``float32`` matrix; filters become masks (or a gathered subset when selective).

    Args:
        block: score-matrix entries computed at once (bounds peak memory to ``4 * block`` bytes).
    """

    def __init__(self, dim: int, metric: str = "cosine", block: int = 1 << 24):
        super().__init__(dim, metric)
        self.block = block
        self._data = np.empty((0, dim), np.float32)

    def _params(self) -> dict:
        return {"block": self.block}

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def _reserve(self, n: int) -> None:
        if n > len(self._data):
            grown = np.empty((max(n, len(self._data) * 3 // 2), self.dim), np.float32)
            grown[:self._n_slots] = self._data[:self._n_slots]
            self._data = grown

    def _add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        self._data[labels] = vectors

    def _get(self, labels: np.ndarray) -> np.ndarray:
        return self._data[labels]

    def _search(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        n = self._n_slots
        allowed = self._alive[:n] if mask is None else mask
        rows = None
        if allowed.all():
            data, bias = self._data[:n], None
        elif allowed.sum() * 4 < n:  # selective: gather the eligible rows
            rows = np.flatnonzero(allowed)
            data, bias = self._data[rows], None
        else:
            data, bias = self._data[:n], torch.from_numpy(np.where(allowed, 0.0, -np.inf).astype(np.float32))
        base = torch.from_numpy(data)
        step = max(1, self.block // max(1, len(data)))
        labels = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        with torch.no_grad():
            for s in range(0, len(queries), step):
                sim = torch.from_numpy(queries[s:s + step]) @ base.T
                if bias is not None:
                    sim += bias
                vals, idx = torch.topk(sim, k, dim=1)
                labels[s:s + step], scores[s:s + step] = idx.numpy(), vals.numpy()
        return (rows[labels] if rows is not None else labels), scores

    def _state(self, scratch: Path) -> dict[str, _io.Section]:
        return {"vectors": self._data[:self._n_slots]}

    def _load_state(self, reader: _io.Reader) -> None:
        self._data = reader.array("vectors")
