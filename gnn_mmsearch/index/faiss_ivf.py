"""Inverted-file index on FAISS: IVF-Flat, or IVF-PQ with exact re-scoring from a memory-mapped file.

Vectors are assigned to the nearest of ``nlist`` centroids (spherical k-means, inner product on unit vectors = cosine);
a query scans the ``nprobe`` lists whose centroids are closest to it. ``ivf_flat`` keeps the float32 vectors in the
lists, so its scores are exact. ``ivf_pq`` keeps ``m``-byte product-quantisation codes of the residuals (``nbits``
per sub-vector), ranks with them, and re-scores the best ``rescore`` candidates against the full vectors, which live
in a memory-mapped file (page cache, not heap; ``_io.MappedRows``): RAM holds codes, ids and centroids only
(:attr:`FaissIVFIndex.nbytes`).

Training (k-means for the centroids, and the PQ codebooks) runs on a sample of the first ``add`` (or an explicit
:meth:`FaissIVFIndex.train`): add a representative first batch. With fewer than ``39 * nlist`` training vectors
(FAISS's minimum for stable centroids) ``nlist`` is clamped to ``n // 39`` with a warning, and ``nbits`` to
``log2(n)`` (k-means needs a vector per code word); the clamped values are what the index saves.

Labels are the base class's dense slots and serve directly as FAISS ids; deleted items are ``remove_ids``-ed, so the
lists hold live items only. Filters run inside the list scan as an ``IDSelectorBitmap``, with ``nprobe`` divided by
the filter's selectivity (the matching neighbours lie farther away); filters matching at most
``exact_below * sqrt(len(index))`` items, and any query the scan cannot fill, are answered exactly.

With a FAISS build that has GPU support and ``device="cuda"``, unfiltered searches run on a GPU copy of the index
(made on the first search after a change); training, adds, deletes, filtered searches and the saved file stay on the
CPU index. A CPU-only FAISS falls back to the CPU with a warning.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it announces which CPU build it loaded, at INFO

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from . import _io
from .base import INDEXES, VectorIndex, topk

log = logging.getLogger(__name__)

METHODS = ("ivf_flat", "ivf_pq")
MIN_POINTS_PER_CENTROID = 39  # FAISS warns below this many training vectors per k-means centroid
GPU_MAX_K = 2048  # the largest k FAISS's GPU search returns
_RESCORE_BLOCK = 64  # queries re-scored at once (bounds the gathered rows to 64 * rescore * dim floats)
_gpu_resources = None


def gpu_available() -> bool:
    """Whether this FAISS build has GPU support and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@INDEXES.register("faiss")
class FaissIVFIndex(VectorIndex):
    """Approximate index on FAISS inverted lists.

    Args:
        method: ``"ivf_flat"`` (float32 vectors in the lists, exact scores) or ``"ivf_pq"`` (PQ codes, re-scored).
        nlist: number of inverted lists (k-means centroids); about ``4 * sqrt(n)`` is usual.
        nprobe: lists scanned per query (raised for filtered queries).
        m: PQ sub-quantisers (bytes per code at ``nbits=8``); must divide ``dim``. ``ivf_pq`` only.
        nbits: bits per sub-quantiser code (1-16). ``ivf_pq`` only.
        rescore: PQ candidates re-scored exactly per query (at least ``k``). ``ivf_pq`` only.
        train_size: vectors sampled from the first ``add`` for training.
        exact_below: filtered queries matching at most ``exact_below * sqrt(len(index))`` items are answered by
            exact search over the matches.
        device: ``"cuda"`` searches on a GPU when FAISS has GPU support, else ``"cpu"``; ``"auto"``: a GPU when
            FAISS sees one (not saved with the index).
        storage: directory for the scratch vector file (default: the system temp dir); a loaded index maps its
            saved file until the first write.
        seed: seed for the training sample and k-means.
    """

    def __init__(self, dim: int, metric: str = "cosine", method: str = "ivf_pq", nlist: int = 1024, nprobe: int = 32,
                 m: int = 16, nbits: int = 8, rescore: int = 200, train_size: int = 100_000,
                 exact_below: float = 20.0, device: str = "cpu", storage: str | None = None, seed: int = 0):
        super().__init__(dim, metric)
        if method not in METHODS:
            raise ValueError(f"unknown faiss method {method!r}; choose from {', '.join(METHODS)}")
        for name, value in (("nlist", nlist), ("nprobe", nprobe), ("train_size", train_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if method == "ivf_pq":
            if m < 1 or dim % m:
                raise ValueError(f"m={m} (PQ sub-vectors) must be a positive divisor of dim={dim}")
            if not 1 <= nbits <= 16:
                raise ValueError(f"nbits must be in [1, 16], got {nbits}")
            if rescore < 0:
                raise ValueError(f"rescore must be >= 0, got {rescore}")
        if device == "auto":  # the job's device=auto: a GPU when this FAISS build sees one
            device = "cuda" if faiss.get_num_gpus() > 0 else "cpu"
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
        self.method, self.nlist, self.nprobe, self.m, self.nbits = method, nlist, nprobe, m, nbits
        self.rescore, self.train_size, self.exact_below, self.seed = rescore, train_size, exact_below, seed
        self.device, self.storage = device, storage
        self._rows = _io.MappedRows(dim, storage)
        self._ivf = self._new_ivf()
        self._gpu_ivf = None  # the GPU copy of _ivf, made lazily; None when stale

    def _params(self) -> dict:
        return {"method": self.method, "nlist": self.nlist, "nprobe": self.nprobe, "m": self.m, "nbits": self.nbits,
                "rescore": self.rescore, "train_size": self.train_size, "exact_below": self.exact_below,
                "seed": self.seed}

    def _new_ivf(self) -> faiss.IndexIVF:
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.method == "ivf_flat":
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            ivf = faiss.IndexIVFPQ(quantizer, self.dim, self.nlist, self.m, self.nbits, faiss.METRIC_INNER_PRODUCT)
            ivf.pq.cp.seed = self.seed
        ivf.cp.seed = self.seed
        return ivf

    @property
    def nbytes(self) -> int:
        ivf = self._ivf
        lists = ivf.ntotal * (ivf.code_size + 8)  # a code and an int64 id per item
        codebooks = self.dim * (1 << self.nbits) * 4 if self.method == "ivf_pq" else 0
        return lists + self.nlist * self.dim * 4 + codebooks

    @property
    def mapped_bytes(self) -> int:
        return self._n_slots * self.dim * 4

    @property
    def trained(self) -> bool:
        return bool(self._ivf.is_trained)

    # ------------------------------------------------------------------------------------------------- training
    def train(self, vectors: np.ndarray) -> None:
        """Fit the centroids (and PQ codebooks) on a sample of ``vectors``. Must precede any ``add``."""
        if len(self):
            raise RuntimeError("train() must be called before items are added")
        x = np.asarray(vectors, np.float32)
        rng = np.random.default_rng(self.seed)
        if len(x) > self.train_size:
            x = x[np.sort(rng.choice(len(x), self.train_size, replace=False))]
        x = np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), np.float32)
        if len(x) == 0:
            raise ValueError("cannot train on zero vectors")
        nlist = min(self.nlist, max(1, len(x) // MIN_POINTS_PER_CENTROID))
        nbits = min(self.nbits, max(1, int(math.log2(len(x)))))
        if (nlist, nbits) != (self.nlist, self.nbits):
            changed = [f"{name} {old} -> {new}" for name, old, new in
                       (("nlist", self.nlist, nlist), ("nbits", self.nbits, nbits)) if old != new]
            log.warning("faiss index trained on %d vectors only: %s (train on at least %d for the configured "
                        "values)", len(x), ", ".join(changed),
                        max(MIN_POINTS_PER_CENTROID * self.nlist, 1 << self.nbits if self.method == "ivf_pq" else 0))
            self.nlist, self.nbits = nlist, nbits
            self._ivf = self._new_ivf()
        if self.method == "ivf_pq" and len(x) < MIN_POINTS_PER_CENTROID << self.nbits:
            self._ivf.pq.cp.min_points_per_centroid = 1  # one warning here rather than one from FAISS per codebook
            log.warning("PQ codebooks trained on %d vectors (FAISS suggests at least %d)", len(x),
                        MIN_POINTS_PER_CENTROID << self.nbits)
        self._ivf.train(x)
        self._gpu_ivf = None
        log.info("faiss %s trained on %d vectors (nlist=%d%s)", self.method, len(x), self.nlist,
                 f", m={self.m}, nbits={self.nbits}" if self.method == "ivf_pq" else "")

    # ---------------------------------------------------------------------------------------------- storage hooks
    def _reserve(self, n: int) -> None:
        self._rows.reserve(n)

    def _add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        if not self.trained:
            self.train(vectors)
        known = labels[labels < len(self._alive)]
        replaced = known[self._alive[known]]
        if len(replaced):
            self._ivf.remove_ids(replaced)
        self._ivf.add_with_ids(vectors, labels)
        self._rows.write(labels, vectors)
        self._gpu_ivf = None

    def _delete(self, labels: np.ndarray) -> None:
        self._ivf.remove_ids(labels)
        self._gpu_ivf = None

    def _get(self, labels: np.ndarray) -> np.ndarray:
        return np.asarray(self._rows.array[labels])

    # ------------------------------------------------------------------------------------------------------ search
    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(allowed)
        idx, scores = topk(queries @ self._get(rows).T, k)
        return rows[idx], scores

    def _gpu(self):
        """The GPU copy of the index when ``device`` asks for one and FAISS can make it, else ``None``."""
        global _gpu_resources
        if not self.device.startswith("cuda"):
            return None
        if not gpu_available():
            log.warning("device=%s but this FAISS build has no GPU support (or sees no GPU): searching on the CPU",
                        self.device)
            self.device = "cpu"
            return None
        if self._gpu_ivf is None:
            if _gpu_resources is None:
                _gpu_resources = faiss.StandardGpuResources()
            gpu_id = int(self.device.partition(":")[2] or 0)
            self._gpu_ivf = faiss.index_cpu_to_gpu(_gpu_resources, gpu_id, self._ivf)
        return self._gpu_ivf

    def _candidates(self, queries: np.ndarray, depth: int, mask: np.ndarray | None,
                    matches: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's top-``depth`` labels (``-1`` pads) and scores (PQ approximations for ``ivf_pq``)."""
        nprobe = self.nprobe
        if mask is None:
            gpu = self._gpu() if depth <= GPU_MAX_K else None
            if gpu is not None:
                scores, labels = gpu.search(queries, depth, params=faiss.SearchParametersIVF(nprobe=nprobe))
                return labels, scores
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            bitmap = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
            nprobe = min(self.nlist, math.ceil(nprobe * len(self) / max(1, matches)))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        scores, labels = self._ivf.search(queries, depth, params=params)
        return labels, scores

    def _rescore(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of the candidate labels ``cand`` (``-1`` pads) by exact cosine."""
        labels = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        for s in range(0, len(queries), _RESCORE_BLOCK):
            block = cand[s:s + _RESCORE_BLOCK]
            flat = block.ravel()
            valid = flat >= 0
            order = np.argsort(np.where(valid, flat, np.iinfo(np.int64).max), kind="stable")  # ascending file reads
            vectors = np.zeros((len(flat), self.dim), np.float32)
            vectors[order[:valid.sum()]] = self._get(flat[order[:valid.sum()]])
            sim = np.einsum("qcd,qd->qc", vectors.reshape(*block.shape, self.dim), queries[s:s + _RESCORE_BLOCK])
            sim[block < 0] = -np.inf
            idx, vals = topk(sim, k)
            labels[s:s + _RESCORE_BLOCK] = np.take_along_axis(block, idx, axis=1)
            scores[s:s + _RESCORE_BLOCK] = vals
        return labels, scores

    def _search(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        matches = len(self) if mask is None else int(mask.sum())
        if mask is not None and matches <= self.exact_below * len(self) ** 0.5:
            return self._exact(queries, k, mask)
        depth = max(k, self.rescore) if self.method == "ivf_pq" else k
        labels, scores = self._candidates(queries, min(depth, matches), mask, matches)
        if self.method == "ivf_pq":
            labels, scores = self._rescore(queries, labels, k)
        labels, scores = labels[:, :k], scores[:, :k]
        short = np.flatnonzero((labels < 0).any(axis=1))  # the probed lists held fewer than k eligible items
        if len(short):
            log.debug("faiss search could not fill k=%d for %d queries; answering them exactly", k, len(short))
            allowed = self._alive[:self._n_slots] if mask is None else mask
            labels[short], scores[short] = self._exact(queries[short], k, allowed)
        return labels, scores

    # ------------------------------------------------------------------------------------------------ persistence
    def _state(self, scratch: Path) -> dict[str, _io.Section]:
        path = scratch / "ivf.faiss"
        faiss.write_index(self._ivf, str(path))
        return {"ivf": _io.RawFile(path, path.stat().st_size), "vectors": self._rows.section(self._n_slots)}

    def _load_state(self, reader: _io.Reader) -> None:
        with reader.extracted("ivf") as path:
            self._ivf = faiss.read_index(str(path))
        self._gpu_ivf = None
        self._rows = _io.MappedRows(self.dim, self.storage, source=reader.array("vectors", mmap=True))
