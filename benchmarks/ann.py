"""ANN benchmark: exact vs HNSW vs binary hashing (LSH / ITQ) vs FAISS (IVF-Flat, IVF-PQ + re-scoring), side by side
on synthetic clustered unit vectors, up to tens of millions of them.

Data: a Gaussian mixture, not uniform noise, because that is what embeddings look like: vectors share a common
direction (anisotropy, random pairs have cosine ~0.1), fall into Zipf-sized clusters (``n / 100`` of them), and vary
inside a cluster mostly along a low-rank subspace (rank 16, spanned by directions drawn from a shared pool), plus
isotropic noise. Queries are fresh draws from the same mixture. The vectors are generated in chunks into a ``.npy``
file, so 10M x 128 float32 (5.1 GB) never sits in memory; ground truth is brute force over chunks of that file.

Per index (each built in a fresh process, vectors added ``--chunk`` at a time; hashing and FAISS train on the first
chunk): build time; memory: ``index.nbytes`` (the search structure in RAM: float32 matrix / HNSW graph with its vectors
/ codes + projection / FAISS lists (codes + int64 ids) + centroids; ids and attributes excluded),
``index.mapped_bytes`` (vectors HNSW, hashing and FAISS keep in a memory-mapped file, i.e. page cache / disk, for
exact re-scoring and ``vectors()``), the process's anonymous-RSS delta over the build (freed heap trimmed first; it
includes id/attribute bookkeeping, ~150 B an item) and its peak RSS (``VmHWM``: everything, data chunks and
file-backed pages included); recall@k against exact search; single-query latency p50/p99 (one query per call);
batch throughput (all queries in one call). Load averages before and after each build are recorded: the reference
machine is shared.

    python benchmarks/ann.py --sizes 1000000                       # every index -> results/ann_1000000.{json,md}
    python benchmarks/ann.py --sizes 10000000 --indexes faiss_pq lsh itq --pq-m 32

Rows are merged into an existing ``ann_<N>.json`` (a row of the same index and parameters is replaced), each with
the arguments and versions of the run that made it (``meta``).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import json
import logging
import math
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import faiss
import hnswlib
import numpy as np
import torch

from gnn_mmsearch._atomic import atomic_write, write_json
from gnn_mmsearch.index import SearchResult, VectorIndex, create_index

log = logging.getLogger("benchmarks.ann")

INDEXES = ("exact", "hnsw", "lsh", "itq", "faiss_flat", "faiss_pq")
_GEN_BLOCK = 1 << 17


class MixtureSampler:
    """Draws ``float32 [n, dim]`` unit vectors from an anisotropic Gaussian mixture with low-rank clusters.

    Cluster parameters are fixed at construction (centres, Zipf sizes, each cluster's ``rank`` subspace directions
    picked from a shared pool of ``pool`` random directions, so 10^5 clusters cost indices, not bases); every
    :meth:`sample` call continues one random stream.
    """

    def __init__(self, dim: int, clusters: int, rank: int = 16, spread: float = 1.0, noise: float = 0.5,
                 shift: float = 0.5, pool: int = 4096, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.rank, self.spread, self.noise, self.dim = rank, spread, noise, dim
        self.common = shift * self._unit(self.rng.standard_normal(dim))
        self.centers = self._unit(self.rng.standard_normal((clusters, dim))).astype(np.float32)
        sizes = np.arange(1, clusters + 1) ** -0.8
        self.cdf = np.cumsum(sizes / sizes.sum())
        self.pool = self._unit(self.rng.standard_normal((pool, dim))).astype(np.float32)
        self.bases = self.rng.integers(pool, size=(clusters, rank), dtype=np.int32)

    @staticmethod
    def _unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    def sample(self, n: int) -> np.ndarray:
        labels = np.minimum(np.searchsorted(self.cdf, self.rng.random(n)), len(self.cdf) - 1)
        x = self.centers[labels] + self.common.astype(np.float32)
        z = (self.spread / np.sqrt(self.rank)) * self.rng.standard_normal((n, self.rank), np.float32)
        for r in range(self.rank):
            x += z[:, r:r + 1] * self.pool[self.bases[labels, r]]
        x += (self.noise / np.sqrt(self.dim)) * self.rng.standard_normal((n, self.dim), np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def write_dataset(path: Path, n: int, queries: int, dim: int, seed: int) -> np.ndarray:
    """``n`` vectors into the ``.npy`` file ``path`` (chunk by chunk); returns ``queries`` fresh ones."""
    sampler = MixtureSampler(dim, clusters=max(10, n // 100), seed=seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, _GEN_BLOCK):
        out[s:s + _GEN_BLOCK] = sampler.sample(min(_GEN_BLOCK, n - s))
    out.flush()
    del out
    return sampler.sample(queries)


def read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a float32 ``.npy`` file, read (not mapped: no file pages stay resident)."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
        offset = f.tell()
    dim = shape[1]
    return np.fromfile(path, np.float32, count=(stop - start) * dim, offset=offset + start * dim * 4).reshape(-1, dim)


def ground_truth(path: Path, n: int, queries: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Exact top-``k`` rows ``int64 [Q, k]`` by brute force over chunks of the data file."""
    q = torch.from_numpy(queries)
    best_s = torch.full((len(q), k), -np.inf)
    best_i = torch.zeros((len(q), k), dtype=torch.int64)
    for s in range(0, n, chunk):
        block = torch.from_numpy(read_rows(path, s, min(n, s + chunk)))
        vals, idx = torch.topk(q @ block.T, min(k, len(block)), dim=1)
        merged_s, pos = torch.topk(torch.cat([best_s, vals], 1), k, dim=1)
        best_i = torch.gather(torch.cat([best_i, idx + s], 1), 1, pos)
        best_s = merged_s
    return best_i.numpy()


def memory() -> dict[str, int]:
    """Resident, anonymous resident and peak resident bytes of this process (Linux; zeros elsewhere)."""
    keys = {"VmRSS": "rss", "RssAnon": "anon", "VmHWM": "peak"}
    out = dict.fromkeys(keys.values(), 0)
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in keys:
                out[keys[key]] = int(value.split()[0]) * 1024
    return out


def release_free_memory() -> None:
    """Collect garbage and return freed heap pages to the OS (glibc ``malloc_trim``), so RSS reflects live data."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def recall(result: SearchResult, truth: list[list[str]], k: int) -> float:
    return float(np.mean([len(set(r[:k]) & set(t)) / k for r, t in zip(result.ids, truth)]))


def measure(index: VectorIndex, queries: np.ndarray, truth: list[list[str]], k: int) -> dict:
    """Recall, single-query latency percentiles and batch throughput of ``index``."""
    index.search(queries[:8], k)  # warm-up
    lat = []
    for q in queries:
        start = time.perf_counter()
        index.search(q, k)
        lat.append(time.perf_counter() - start)
    start = time.perf_counter()
    result = index.search(queries, k)
    batch = time.perf_counter() - start
    return {"recall": recall(result, truth, k), "p50_ms": 1e3 * float(np.percentile(lat, 50)),
            "p99_ms": 1e3 * float(np.percentile(lat, 99)), "qps": len(queries) / batch}


def bench_index(name: str, kind: str, params: dict, variants: list[dict], workdir: Path, k: int, chunk: int,
                threads: int) -> list[dict]:
    """Build one index (in a fresh process, so the memory figures are its own) and measure each search-time variant
    (attribute overrides such as ``{"ef": 64}``)."""
    setup_logging()
    torch.set_num_threads(threads)
    data_path = workdir / "data.npy"
    n = np.load(data_path, mmap_mode="r").shape[0]
    queries = np.load(workdir / "queries.npy")
    truth = [[str(j) for j in row] for row in np.load(workdir / "truth.npy")]
    release_free_memory()
    before, load_before = memory(), os.getloadavg()[0]
    start = time.perf_counter()
    index = create_index(kind, dim=queries.shape[1], **params)
    for s in range(0, n, chunk):
        stop = min(n, s + chunk)
        index.add(read_rows(data_path, s, stop), [str(i) for i in range(s, stop)])
    build_s = time.perf_counter() - start
    release_free_memory()
    after = memory()
    stats = {"name": name, "index": kind, "size": n, "dim": queries.shape[1], "build_s": build_s,
             "nbytes": index.nbytes, "mapped_bytes": index.mapped_bytes, "compression": n * queries.shape[1] * 4
             / index.nbytes, "anon_rss_delta": after["anon"] - before["anon"], "load_before": load_before, "load_after_build": os.getloadavg()[0]}
    log.info("n=%d %s built in %.0f s (%.0f MiB in RAM)", n, name, build_s, index.nbytes / 2**20)
    rows = []
    for variant in variants:
        for key, value in variant.items():
            setattr(index, key, value)
        row = {**stats, "params": {**params, **variant}, **measure(index, queries, truth, k)}
        log.info("n=%d %s %s: recall %.3f, p50 %.2f ms", n, name, variant, row["recall"], row["p50_ms"])
        rows.append(row)
    peak = memory()["peak"]  # over the build and every search
    return [{**row, "peak_rss": peak} for row in rows]


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


def default_nlist(n: int) -> int:
    """A power of two near ``sqrt(n)`` (1M -> 1024, 10M -> 4096)."""
    return 1 << max(4, round(math.log2(math.sqrt(n))))


def jobs(n: int, args: argparse.Namespace, threads: int) -> list[tuple[str, str, dict, list[dict]]]:
    """``(name, kind, constructor params, search-time variants)`` for each selected index."""
    nlist = args.nlist or default_nlist(n)
    out = []
    for name in args.indexes:
        if name == "exact":
            out.append((name, "exact", {}, [{}]))
        elif name == "hnsw":
            out.append((name, "hnsw", {"M": args.M, "ef_construction": args.ef_construction, "num_threads": threads,
                                       "capacity": n}, [{"ef": ef} for ef in args.ef]))
        elif name in ("lsh", "itq"):
            out += [(f"{name}-{bits}", "hashing", {"method": name, "bits": bits}, [{"rerank": r} for r in args.rerank])
                    for bits in args.bits if name == "lsh" or bits <= args.dim]
        elif name == "faiss_flat":
            out.append((name, "faiss", {"method": "ivf_flat", "nlist": nlist, "train_size": args.train_size},
                        [{"nprobe": p} for p in args.nprobe]))
        elif name == "faiss_pq":
            out += [(f"faiss_pq-{m}", "faiss", {"method": "ivf_pq", "nlist": nlist, "m": m,
                                                "train_size": args.train_size},
                     [{"nprobe": p, "rescore": r} for p, r in itertools.product(args.nprobe, args.rescore)])
                    for m in args.pq_m]
    return out


def run_size(n: int, args: argparse.Namespace) -> list[dict]:
    threads = args.threads or os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ann-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        queries = write_dataset(workdir / "data.npy", n, args.queries, args.dim, args.seed)
        np.save(workdir / "queries.npy", queries)
        log.info("n=%d: data written in %.0f s", n, time.perf_counter() - start)
        start = time.perf_counter()
        np.save(workdir / "truth.npy", ground_truth(workdir / "data.npy", n, queries, args.k, args.chunk))
        log.info("n=%d: ground truth in %.0f s", n, time.perf_counter() - start)
        for name, kind, params, variants in jobs(n, args, threads):
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows += pool.submit(bench_index, name, kind, params, variants, workdir, args.k, args.chunk,
                                    threads).result()
    return rows


def merge(path: Path, rows: list[dict], meta: dict) -> list[dict]:
    """``rows`` (each tagged with this run's ``meta``) after the rows of ``path`` that they do not replace (same
    index name and parameters), so runs of different indexes at one size add up to one table."""
    rows = [{**row, "meta": meta} for row in rows]
    new = {(r["name"], json.dumps(r["params"], sort_keys=True)) for r in rows}
    old = json.loads(path.read_text())["results"] if path.exists() else []
    return [r for r in old if (r["name"], json.dumps(r["params"], sort_keys=True)) not in new] + rows


def short_params(row: dict) -> str:
    p = row["params"]
    if row["index"] == "hnsw":
        return f"M={p['M']}, ef={p['ef']}"
    if row["index"] == "hashing":
        return f"{p['method'].upper()} {p['bits']} bits, re-score {p['rerank']}"
    if row["index"] == "faiss":
        head = f"IVF{p['nlist']},PQ{p['m']}" if p["method"] == "ivf_pq" else f"IVF{p['nlist']},Flat"
        return head + f", nprobe={p['nprobe']}" + (f", re-score {p['rescore']}" if p["method"] == "ivf_pq" else "")
    return ""


def format_markdown(rows: list[dict]) -> str:
    lines = ["| size | index | params | recall@10 | p50 ms | p99 ms | q/s (batch) | build s | RAM MiB | x less "
             "| mmap MiB | anon RSS MiB | peak RSS MiB |", "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['size']:,} | {r['name']} | {short_params(r)} | {r['recall']:.3f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['qps']:,.0f} | {r['build_s']:.0f} | {r['nbytes'] / 2**20:,.1f} | "
                     f"{r['compression']:.1f} | {r['mapped_bytes'] / 2**20:,.0f} | {r['anon_rss_delta'] / 2**20:,.0f} "
                     f"| {r['peak_rss'] / 2**20:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--indexes", nargs="+", choices=INDEXES, default=list(INDEXES))
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--bits", type=int, nargs="+", default=[128, 256], help="code lengths (ITQ: those <= dim)")
    parser.add_argument("--rerank", type=int, nargs="+", default=[200], help="hashing: candidates re-scored")
    parser.add_argument("--nlist", type=int, default=None, help="FAISS lists (default: a power of 2 near sqrt(n))")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--pq-m", type=int, nargs="+", default=[16, 32], help="FAISS PQ bytes per vector")
    parser.add_argument("--rescore", type=int, nargs="+", default=[100, 300], help="FAISS PQ: candidates re-scored")
    parser.add_argument("--train-size", type=int, default=200_000, help="FAISS: training sample")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="vectors per add() call")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and hnswlib (0: all cores); "
                        "FAISS follows OMP_NUM_THREADS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--workdir", type=Path, default=None, help="where the data file goes (default: system temp)")
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(args.threads or os.cpu_count())

    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__,
            "torch": torch.__version__, "faiss": faiss.__version__,
            "hnswlib": getattr(hnswlib, "__version__", None), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    for n in args.sizes:
        out = args.out_dir / f"ann_{n}"
        rows = merge(out.with_suffix(".json"), run_size(n, args), meta)
        write_json(out.with_suffix(".json"), {"results": rows})
        atomic_write(out.with_suffix(".md"), format_markdown(rows) + "\n")
        log.info("\n%s\n\nwrote %s.{json,md}", format_markdown(rows), out)


if __name__ == "__main__":
    main()
