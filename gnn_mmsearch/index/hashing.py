"""Binary-code index: Hamming-distance candidates re-scored exactly.

Codes come from random-hyperplane LSH (``sign(x @ R)``, Charikar 2002) or ITQ (PCA to ``bits`` dimensions, then the
rotation minimising quantisation error, Gong & Lazebnik 2011). They are ``np.packbits``-packed into ``uint64`` words,
stored word-major (``[words, n]``, so each pass runs over contiguous memory); Hamming distance is XOR +
``np.bitwise_count`` summed over words, and the nearest codes are picked from a histogram of the distances.

The ``rerank`` nearest codes are re-scored with the full-precision vectors, which live in a memory-mapped file (page
cache), not in the process heap: RAM holds the codes and the projection only (:attr:`HashingIndex.nbytes`;
:attr:`HashingIndex.mapped_bytes` is the file).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import _io
from .base import INDEXES, VectorIndex, topk

log = logging.getLogger(__name__)

METHODS = ("lsh", "itq")
_ENCODE_BLOCK = 1 << 12


def smallest(dist: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` smallest small non-negative integers in ``dist`` (ties by position), unordered."""
    cut = int(np.searchsorted(np.cumsum(np.bincount(dist)), count))  # smallest d with #(dist <= d) >= count
    below = np.flatnonzero(dist < cut)
    return np.concatenate([below, np.flatnonzero(dist == cut)[:count - len(below)]])


def fit_itq(x: np.ndarray, bits: int, iters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """ITQ: mean and ``[dim, bits]`` projection (PCA then learned rotation) so that codes are ``(x - mean) @ P > 0``."""
    mean = x.mean(axis=0)
    xc = (x - mean).astype(np.float64)
    _, evecs = np.linalg.eigh(xc.T @ xc)
    pca = evecs[:, ::-1][:, :bits]
    v = xc @ pca
    rotation, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
    for _ in range(iters):
        b = np.where(v @ rotation >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(v.T @ b)  # argmax_R tr(B^T V R) over orthogonal R
        rotation = u @ wt
    return mean.astype(np.float32), (pca @ rotation).astype(np.float32)


@INDEXES.register("hashing")
class HashingIndex(VectorIndex):
    """Hamming search over ``bits``-bit codes, then exact re-scoring of the best ``rerank`` candidates.

    Args:
        method: ``"lsh"`` (data-independent) or ``"itq"`` (trained on the first ``add`` or by :meth:`train`;
            ``bits <= dim``).
        bits: code length; a multiple of 64 wastes no padding.
        rerank: Hamming candidates re-scored per query (at least ``k``; divided by the filter's selectivity when
            filtering).
        itq_iters: ITQ alternating-optimisation iterations.
        train_size: vectors sampled for ITQ training.
        storage: directory for the scratch file of re-scoring vectors (default: the system temp dir); a loaded
            index maps its saved file until the first write.
        seed: seed for the hyperplanes / initial rotation / training sample.
    """

    def __init__(self, dim: int, metric: str = "cosine", method: str = "itq", bits: int = 256, rerank: int = 200,
                 itq_iters: int = 50, train_size: int = 10_000, storage: str | None = None, seed: int = 0):
        super().__init__(dim, metric)
        if method not in METHODS:
            raise ValueError(f"unknown hashing method {method!r}; choose from {', '.join(METHODS)}")
        if not 1 <= bits < 1 << 16:
            raise ValueError(f"bits must be in [1, 65535], got {bits}")
        if method == "itq" and bits > dim:
            raise ValueError(f"ITQ codes are at most dim={dim} bits (PCA), got bits={bits}; use method='lsh'")
        self.method, self.bits, self.rerank, self.itq_iters = method, bits, rerank, itq_iters
        self.train_size, self.storage, self.seed = train_size, storage, seed
        self._words = -(-bits // 64)
        self._codes = np.empty((self._words, 0), np.uint64)
        self._rows = _io.MappedRows(dim, storage)
        self._mean = np.zeros(dim, np.float32)
        self._proj: np.ndarray | None = None
        if method == "lsh":
            self._proj = np.random.default_rng(seed).standard_normal((dim, bits)).astype(np.float32)

    def _params(self) -> dict:
        return {"method": self.method, "bits": self.bits, "rerank": self.rerank, "itq_iters": self.itq_iters,
                "train_size": self.train_size, "seed": self.seed}

    @property
    def nbytes(self) -> int:
        proj = 0 if self._proj is None else self._proj.nbytes
        return self._codes.nbytes + proj + self._mean.nbytes

    @property
    def mapped_bytes(self) -> int:
        return self._n_slots * self.dim * 4

    @property
    def trained(self) -> bool:
        return self._proj is not None

    def train(self, vectors: np.ndarray) -> None:
        """Fit the ITQ projection on (a sample of) ``vectors``; LSH needs no training. Must precede any ``add``."""
        if self.method == "lsh":
            return
        if len(self):
            raise RuntimeError("train() must be called before items are added")
        x = np.asarray(vectors, np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if len(x) < self.bits:
            raise ValueError(f"ITQ needs at least bits={self.bits} training vectors, got {len(x)}")
        rng = np.random.default_rng(self.seed)
        if len(x) > self.train_size:
            x = x[rng.choice(len(x), self.train_size, replace=False)]
        self._mean, self._proj = fit_itq(x, self.bits, self.itq_iters, rng)
        log.info("ITQ trained on %d vectors (%d bits)", len(x), self.bits)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Packed codes ``uint64 [n, ceil(bits / 64)]`` of unit vectors ``x`` (in blocks, to bound temporaries)."""
        packed = np.zeros((len(x), self._words * 8), np.uint8)
        for s in range(0, len(x), _ENCODE_BLOCK):
            signs = (x[s:s + _ENCODE_BLOCK] - self._mean) @ self._proj > 0
            packed[s:s + _ENCODE_BLOCK, :-(-self.bits // 8)] = np.packbits(signs, axis=1)
        return packed.view(np.uint64)

    def _reserve(self, n: int) -> None:
        if n > self._codes.shape[1]:
            grown = np.zeros((self._words, max(n, self._codes.shape[1] * 3 // 2)), np.uint64)
            grown[:, :self._n_slots] = self._codes[:, :self._n_slots]
            self._codes = grown
        self._rows.reserve(n)

    def _add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        if not self.trained:
            self.train(vectors)
        self._codes[:, labels] = self.encode(vectors).T
        self._rows.write(labels, vectors)

    def _get(self, labels: np.ndarray) -> np.ndarray:
        return np.asarray(self._rows.array[labels])

    @staticmethod
    def hamming(query_code: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Hamming distances ``uint16 [n]`` between one packed code ``[words]`` and word-major ``codes [words, n]``."""
        dist = np.bitwise_count(codes[0] ^ query_code[0]).astype(np.uint16)
        for w in range(1, len(codes)):
            dist += np.bitwise_count(codes[w] ^ query_code[w])
        return dist

    def _search(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        n = self._n_slots
        allowed = self._alive[:n] if mask is None else mask
        rows, codes = None, self._codes[:, :n]
        eligible = int(allowed.sum())
        if eligible * 4 < n:  # selective: only look at the eligible codes
            rows = np.flatnonzero(allowed)
            codes, allowed = codes[:, rows], None
        elif allowed.all():
            allowed = None
        # filtered: the eligible neighbours are farther away, where Hamming ranks worse, so widen the pool to
        # rerank / selectivity (which turns into exact search over the eligible items for selective filters)
        pool = min(max(-(-self.rerank * len(self) // max(1, eligible)), k), eligible)
        qcodes = self.encode(queries)
        labels = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        for i, q in enumerate(queries):
            dist = self.hamming(qcodes[i], codes)
            if allowed is not None:
                dist[~allowed] = self.bits + 1
            cand = smallest(dist, pool)
            if rows is not None:
                cand = rows[cand]
            cand.sort()  # sequential reads from the memory map
            idx, vals = topk((self._get(cand) @ q)[None], k)
            labels[i], scores[i] = cand[idx[0]], vals[0]
        return labels, scores

    def _state(self, scratch: Path) -> dict[str, _io.Section]:
        n = self._n_slots
        state = {"mean": self._mean, "codes": self._codes[:, :n], "vectors": self._rows.section(n)}
        if self._proj is not None:
            state["proj"] = self._proj
        return state

    def _load_state(self, reader: _io.Reader) -> None:
        self._mean = reader.array("mean")
        self._proj = reader.array("proj") if "proj" in reader.sections else None
        self._codes = reader.array("codes")
        self._rows = _io.MappedRows(self.dim, self.storage, source=reader.array("vectors", mmap=True))
