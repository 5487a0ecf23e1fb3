"""End-to-end latency of a text query through ``Searcher``: query encoding (MiniLM + the trained query tower), HNSW
search and MMR over the top 100 candidates, on an index of ``--num-products`` products.

Products: the run's served product vectors (2,000 on the default catalog) plus noisy copies of them up to
``--num-products`` (``v + noise * g / sqrt(d)`` with ``g`` standard normal, renormalised: cosine about 0.9 to the source
at ``--noise 0.5``), so the index lives in the trained encoder's output space, with clusters of near-duplicates like
product variants. A copy carries its source's title, category and price. Queries: the run's held-out title queries
(those of ``text_query/*``), cycled; encoded one at a time as a user would send them.

Threads: ``torch.set_num_threads(--threads)`` (default 2, the target machine's cores) for the encoder; hnswlib answers
a single query on one thread. Reports single-query p50/p99 after ``--warmup`` queries, end to end and by stage
(encoding; search + MMR), the index build time and memory, and the HNSW recall@10 against exact search for the
queries (without MMR). Results are merged into ``--out`` by (num_products, threads).

    python benchmarks/e2e_latency.py --run runs/2026-11-24_03-48-27 --num-products 100000
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gnn_mmsearch.data import Catalog, split_products
from gnn_mmsearch.evaluation import title_queries
from gnn_mmsearch.index import create_index
from gnn_mmsearch.ranking import ItemTable, RankingPipeline
from gnn_mmsearch.run_dir import RunDir
from gnn_mmsearch.search import Searcher, index_attributes

log = logging.getLogger("benchmarks.e2e_latency")


def synthetic_catalog(base: Searcher, n: int, noise: float, seed: int) -> tuple[Catalog, np.ndarray]:
    """The run's products plus noisy copies up to ``n``, and their unit vectors ``[n, d]``."""
    products = base.catalog.products
    vectors = base.index.vectors([p.id for p in products])
    rng = np.random.default_rng(seed)
    src = rng.integers(len(products), size=max(0, n - len(products)))
    copies = vectors[src] + (noise / np.sqrt(vectors.shape[1])) * rng.standard_normal((len(src), vectors.shape[1]))
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    extra = [replace(products[s], id=f"{products[s].id}~{j}") for j, s in enumerate(src.tolist())]
    return Catalog(products[:n] + extra), np.concatenate([vectors[:n], copies.astype(np.float32)])


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = 1e3 * np.asarray(seconds)
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def measure(args: argparse.Namespace) -> dict:
    cfg = RunDir(args.run).config()
    base = Searcher.from_run(args.run)
    catalog, vectors = synthetic_catalog(base, args.num_products, args.noise, args.seed)
    start = time.perf_counter()
    index = create_index("hnsw", dim=vectors.shape[1], M=args.M, ef_construction=args.ef_construction, ef=args.ef,
                         capacity=len(vectors), num_threads=args.threads)
    index.add(vectors, catalog.ids, index_attributes(catalog))
    build_s = time.perf_counter() - start
    exact = create_index("exact", dim=vectors.shape[1])
    exact.add(vectors, catalog.ids)
    table = ItemTable.from_catalog(catalog, base.encoder.config.graph_edge_types)
    pipeline = RankingPipeline(table, mmr_lambda=args.mmr_lambda, candidates=args.candidates)
    searcher = Searcher(base.encoder, index, catalog, pipeline)

    holdout = split_products(len(base.catalog), cfg.split.query_holdout_ratio, cfg.seed)
    pool, _ = title_queries(base.catalog.products, holdout.nonzero().flatten().tolist(), cfg.seed)
    queries = [pool[i % len(pool)] for i in range(args.warmup + args.queries)]
    for q in queries[:args.warmup]:
        searcher.search(text=q, k=args.k)
    timed = queries[args.warmup:]

    total, encode, search, emb = [], [], [], []
    for q in timed:  # end to end, then the same work by stage (interleaved: both see the same machine load)
        t0 = time.perf_counter()
        searcher.search(text=q, k=args.k)
        t1 = time.perf_counter()
        vec = base.encoder.encode_query(text=q).numpy()
        t2 = time.perf_counter()
        searcher.serve(vec, [pipeline.query(vec[0], index.vectors)], args.k)
        t3 = time.perf_counter()
        total.append(t1 - t0)
        encode.append(t2 - t1)
        search.append(t3 - t2)
        emb.append(vec[0])
    emb = np.stack(emb)
    approx, truth = index.search(emb, args.k).ids, exact.search(emb, args.k).ids
    recall = float(np.mean([len(set(a) & set(t)) / args.k for a, t in zip(approx, truth)]))
    return {"num_products": len(catalog), "threads": args.threads, "queries": len(timed), "warmup": args.warmup,
            "k": args.k, "candidates": args.candidates, "mmr_lambda": args.mmr_lambda, "noise": args.noise,
            "hnsw": {"M": args.M, "ef_construction": args.ef_construction, "ef": args.ef},
            "build_s": build_s, "index_mib": index.nbytes / 2**20, "hnsw_recall@10": recall,
            "end_to_end": percentiles(total), "encode": percentiles(encode), "search_mmr": percentiles(search)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `gnn-mmsearch run` directory")
    parser.add_argument("--num-products", type=int, default=100_000)
    parser.add_argument("--noise", type=float, default=0.5, help="norm of the perturbation of a copy")
    parser.add_argument("--queries", type=int, default=300, help="timed queries")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=100, help="MMR picks from this many search results")
    parser.add_argument("--mmr-lambda", type=float, default=0.7)
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef", type=int, default=64, help="raised to --candidates by the search")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (and hnswlib threads for the build)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/e2e_latency.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    row = {**measure(args), "run": str(args.run), "machine": platform.platform(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]}
    old = json.loads(args.out.read_text())["results"] if args.out.exists() else []
    rows = sorted([r for r in old if (r["num_products"], r["threads"]) != (row["num_products"], row["threads"])]
                  + [row], key=lambda r: (r["num_products"], r["threads"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": rows}, indent=1))
    e2e, enc, srch = row["end_to_end"], row["encode"], row["search_mmr"]
    print(f"{row['num_products']} products, {row['threads']} thread(s), {row['queries']} queries: "
          f"end to end p50 {e2e['p50_ms']:.2f} ms, p99 {e2e['p99_ms']:.2f} ms "
          f"(encode p50 {enc['p50_ms']:.2f} ms, search + MMR p50 {srch['p50_ms']:.2f} ms); "
          f"HNSW recall@10 {row['hnsw_recall@10']:.3f}; build {row['build_s']:.1f} s, {row['index_mib']:.1f} MiB")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
