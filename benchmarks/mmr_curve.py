"""Relevance vs diversity of MMR over lambda, on a finished run.

The queries are the run's ``text_query/*`` queries (titles of the products held out of query-alignment training, brand
and some words dropped; one relevant product each). For each lambda in 0, 0.1, ..., 1 the served index's top
``--candidates`` are re-ranked by the served pipeline's MMR stage (on min-max normalised scores; lambda = 1:
relevance order, i.e. no re-ranking) and the top ``--k`` it serves scored:
recall@k and NDCG@k, intra-list diversity ILD@k (mean pairwise ``1 - cosine`` of the index vectors) and category
coverage@k (distinct leaf categories in the top k, divided by k); see ``gnn_mmsearch/evaluation/served.py``.
Writes a JSON file and a PNG plot and prints a table.

    python benchmarks/mmr_curve.py --run runs/2026-11-24_03-48-27
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gnn_mmsearch.data import split_products  # noqa: E402
from gnn_mmsearch.evaluation import list_metrics, title_queries  # noqa: E402
from gnn_mmsearch.ranking import RankingPipeline  # noqa: E402
from gnn_mmsearch.run_dir import RunDir  # noqa: E402
from gnn_mmsearch.search import Searcher  # noqa: E402

log = logging.getLogger("benchmarks.mmr_curve")
LAMBDAS = [round(0.1 * i, 1) for i in range(11)]


def curve(run_dir: Path, k: int, candidates: int) -> list[dict]:
    """One row per lambda: ``{"lambda": ..., "recall@k": ..., "ndcg@k": ..., "ild@k": ..., "coverage@k": ...}``."""
    cfg = RunDir(run_dir).config()
    base = Searcher.from_run(run_dir)
    catalog = base.catalog
    holdout = split_products(len(catalog), cfg.split.query_holdout_ratio, cfg.seed)
    queries, targets = title_queries(catalog.products, holdout.nonzero().flatten().tolist(), cfg.seed)
    if not queries:
        raise SystemExit(f"{run_dir}: the run has no held-out title queries")
    log.info("%d queries, MMR over the top %d, k=%d", len(queries), candidates, k)
    features = base.encoder.query_features(text=queries)
    emb = base.encoder.embed_queries(features).detach().numpy()
    categories = {p.id: p.category for p in catalog.products}
    relevant = [{catalog.ids[t]} for t in targets]
    rows = []
    for lam in LAMBDAS:
        searcher = Searcher(base.encoder, base.index, catalog,
                            RankingPipeline(base.pipeline.table, mmr_lambda=lam, candidates=candidates), base.hybrid)
        queries_ = [searcher.pipeline.query(v, base.index.vectors) for v in emb]
        lists = [r.ids for r in searcher.serve(emb, queries_, k, features=features, texts=queries)]
        res = list_metrics(lists, relevant, base.index, categories, k)
        rows.append({"lambda": lam, **{m: res[f"{m}@{k}"] for m in ("recall", "ndcg", "ild", "coverage")}})
    return rows


def format_table(rows: list[dict], k: int) -> str:
    head = f"{'lambda':>6} {f'recall@{k}':>10} {f'ndcg@{k}':>9} {f'ild@{k}':>8} {f'coverage@{k}':>12}"
    return "\n".join([head, "-" * len(head)] + [
        f"{r['lambda']:>6.1f} {r['recall']:>10.4f} {r['ndcg']:>9.4f} {r['ild']:>8.4f} {r['coverage']:>12.4f}"
        for r in rows])


def plot(rows: list[dict], k: int, title: str, path: Path) -> None:
    lam = np.array([r["lambda"] for r in rows])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style in (("recall", "o-"), ("ndcg", "s-"), ("ild", "^--"), ("coverage", "d--")):
        left.plot(lam, [r[key] for r in rows], style, label=f"{key}@{k}")
    left.set(xlabel="MMR lambda (1 = relevance only)", ylabel="value", title="metrics over lambda")
    left.legend()
    left.grid(alpha=0.3)
    for x_key, y_key, style in (("ild", "recall", "o-"), ("coverage", "ndcg", "s-")):
        xs, ys = [r[x_key] for r in rows], [r[y_key] for r in rows]
        right.plot(xs, ys, style, label=f"{y_key}@{k} vs {x_key}@{k}")
        for x, y, lam_i in zip(xs, ys, lam):
            right.annotate(f"{lam_i:.1f}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    right.set(xlabel="diversity", ylabel="relevance", title="trade-off (labels: lambda)")
    right.legend()
    right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `gnn-mmsearch run` directory")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=100, help="MMR picks from this many search results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mmr_curve.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    rows = curve(args.run, args.k, args.candidates)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    info = RunDir(args.run).info()
    meta = {"run": str(args.run), "catalog": info["catalog"], "num_products": info["num_products"],
            "seed": info["seed"], "k": args.k, "candidates": args.candidates}
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    png = args.out.with_suffix(".png")
    plot(rows, args.k, f"MMR over the top {args.candidates}, {info['num_products']} products ({args.run.name})", png)
    print(format_table(rows, args.k))
    log.info("wrote %s and %s", args.out, png)


if __name__ == "__main__":
    main()
