"""ANN benchmark: exact vs HNSW vs binary hashing (LSH / ITQ) on synthetic clustered unit vectors.

Data: a Gaussian mixture, not uniform noise, because that is what embeddings look like: vectors share a common
direction (anisotropy, random pairs have cosine ~0.1), fall into Zipf-sized clusters, and vary inside a cluster mostly
along a low-rank subspace (rank 16), plus isotropic noise. Queries are fresh draws from the same mixture.

Per index: build time; memory: ``index.nbytes`` (the search structure in RAM: float32 matrix / HNSW graph with its
vectors / codes + projection; ids and attributes excluded), ``index.mapped_bytes`` (vectors HNSW and hashing keep in a
memory-mapped file, i.e. page cache / disk, for exact re-scoring and ``vectors()``) and the process RSS and
anonymous-RSS deltas over the build (each index is built in a fresh process, freed heap is trimmed before reading
RSS; the deltas include id/attribute bookkeeping, ~100 B an item); recall@k against exact search;
single-query latency p50/p99 (one query per call); batch throughput (all queries in one call).

    python benchmarks/ann.py --sizes 100000 1000000 --dim 256 --queries 1000 --out benchmarks/results/ann.json
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import logging
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from gnn_mmsearch.index import SearchResult, VectorIndex, create_index

log = logging.getLogger("benchmarks.ann")


def clustered_vectors(n: int, dim: int, clusters: int, rank: int = 16, spread: float = 1.0, noise: float = 0.5,
                      shift: float = 0.5, seed: int = 0) -> np.ndarray:
    """``float32 [n, dim]`` unit vectors from an anisotropic Gaussian mixture with low-rank clusters."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    common = unit(rng.standard_normal(dim))
    centers = unit(rng.standard_normal((clusters, dim)))
    sizes = np.arange(1, clusters + 1) ** -0.8
    labels = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(clusters + 1))
    x = np.empty((n, dim), np.float32)
    for c in range(clusters):
        idx = order[bounds[c]:bounds[c + 1]]
        basis = unit(rng.standard_normal((rank, dim)))
        local = (spread / np.sqrt(rank)) * rng.standard_normal((len(idx), rank)) @ basis
        x[idx] = shift * common + centers[c] + local + (noise / np.sqrt(dim)) * rng.standard_normal((len(idx), dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def rss() -> dict[str, int]:
    """Resident and anonymous resident bytes of this process (Linux; zeros elsewhere)."""
    out = {"VmRSS": 0, "RssAnon": 0}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
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


def bench_index(kind: str, params: dict, variants: list[dict], workdir: Path, truth: list[list[str]] | None,
                k: int, threads: int) -> tuple[list[dict], list[list[str]]]:
    """Build one index and measure each search-time variant (attribute overrides such as ``{"ef": 64}``).

    Runs in a fresh process, so the RSS deltas are this index's alone; ``truth=None`` makes this index's own
    results the ground truth (for the exact index).
    """
    torch.set_num_threads(threads)
    data = np.load(workdir / "data.npy", mmap_mode="r")  # file-backed: touching it does not grow anonymous RSS
    queries = np.load(workdir / "queries.npy")
    ids = [str(i) for i in range(len(data))]
    release_free_memory()
    before = rss()
    start = time.perf_counter()
    index = create_index(kind, dim=data.shape[1], **params)
    index.add(data, ids)
    stats = {"build_s": time.perf_counter() - start, "nbytes": index.nbytes, "mapped_bytes": index.mapped_bytes,
             "compression": data.nbytes / index.nbytes}
    release_free_memory()
    after = rss()
    stats.update(rss_delta=after["VmRSS"] - before["VmRSS"], anon_rss_delta=after["RssAnon"] - before["RssAnon"])
    truth = truth or index.search(queries, k).ids
    rows = []
    for variant in variants:
        for key, value in variant.items():
            setattr(index, key, value)
        rows.append({"index": kind, "params": {**params, **variant}, **stats, **measure(index, queries, truth, k)})
    return rows, truth


def run_size(n: int, args: argparse.Namespace) -> list[dict]:
    threads = args.threads or os.cpu_count()
    jobs = [("exact", {}, [{}]),
            ("hnsw", {"M": args.M, "ef_construction": args.ef_construction, "num_threads": threads, "capacity": n},
             [{"ef": ef} for ef in args.ef])]
    jobs += [("hashing", {"method": method, "bits": bits, "rerank": args.rerank}, [{}])
             for method in ("lsh", "itq") for bits in args.bits if method == "lsh" or bits <= args.dim]
    rows, truth = [], None
    with tempfile.TemporaryDirectory(prefix="ann-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        x = clustered_vectors(n + args.queries, args.dim, clusters=max(10, n // 100), seed=args.seed)
        np.save(workdir / "data.npy", x[:n])
        np.save(workdir / "queries.npy", x[n:])
        del x
        for kind, params, variants in jobs:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                new, truth = pool.submit(bench_index, kind, params, variants, workdir, truth, args.k, threads).result()
            for row in new:
                row.update(size=n, dim=args.dim)
                log.info("n=%d %s %s: recall %.3f, %.0f q/s", n, kind, row["params"], row["recall"], row["qps"])
            rows += new
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'size':>8} {'index':<8} {'params':<28} {'recall':>6} {'p50 ms':>8} {'p99 ms':>8} {'q/s':>9} "
            f"{'build s':>8} {'MiB':>8} {'x less':>6} {'mmap MiB':>8} {'RSS MiB':>8} {'anon MiB':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        p = r["params"]
        short = (f"ef={p['ef']} M={p['M']}" if r["index"] == "hnsw"
                 else f"{p['method']} {p['bits']}b rerank={p['rerank']}" if r["index"] == "hashing" else "")
        lines.append(f"{r['size']:>8} {r['index']:<8} {short:<28} {r['recall']:>6.3f} {r['p50_ms']:>8.3f} "
                     f"{r['p99_ms']:>8.3f} {r['qps']:>9.0f} {r['build_s']:>8.2f} {r['nbytes'] / 2**20:>8.2f} "
                     f"{r['compression']:>6.1f} {r['mapped_bytes'] / 2**20:>8.1f} {r['rss_delta'] / 2**20:>8.1f} "
                     f"{r['anon_rss_delta'] / 2**20:>8.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--bits", type=int, nargs="+", default=[128, 256, 512], help="code lengths (ITQ: those <= dim)")
    parser.add_argument("--rerank", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and hnswlib (0: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ann.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="where the data file goes (default: system temp)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads or os.cpu_count())

    rows = [row for n in args.sizes for row in run_size(n, args)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__, "torch": torch.__version__}
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    log.info("\n%s\n\nwrote %s", format_table(rows), args.out)


if __name__ == "__main__":
    main()
