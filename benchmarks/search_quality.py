"""Search quality side by side: what ``gnn-mmsearch search`` serves, the graph space alone and every baseline
(BM25 with and without a title boost, raw MiniLM / EfficientNet kNN, their concatenation, BM25 + MiniLM reciprocal rank fusion, and for product
queries co-purchase popularity and common neighbours), mean ± std over
seeds, each figure from the same runs (``baseline/<name>/...`` keys of each run's ``metrics.json``).

    OMP_NUM_THREADS=1 python benchmarks/search_quality.py --runs-dir runs/search_quality            # default catalog
    OMP_NUM_THREADS=1 python benchmarks/search_quality.py --runs-dir runs/sq_gift --data gift_cards \\
        --out benchmarks/results/search_quality_gift_cards
    python benchmarks/search_quality.py --runs-dir runs/search_quality --no-run                     # aggregate only
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from gnn_mmsearch.evaluation.query_sets import HEADLINE
from gnn_mmsearch.run_dir import RunDir

ROWS = {"served": "served (relevance head + BM25 with title boost and image-word expansion + query classifier + term "
                  "match for text/image; graph + co-purchase signals for products)", "graph_space": "graph space alone",
        "bm25": "BM25", "bm25_title": "BM25, title boosted (title^3)", "raw_text": "raw MiniLM kNN", "raw_image": "raw EfficientNet kNN",
        "raw_concat": "raw concat kNN", "hybrid": "BM25 + MiniLM RRF", "popularity": "popularity (co-purchase degree)",
        "common_neighbours": "common neighbours (co-purchase graph)",
        "bound": "query-set ceiling (products ranked by the chance the query generator gives the query from them: "
                 "no ranker beats it in expectation)"}


def run(seed: int, data: str, run_dir: Path) -> None:
    overrides = ["experiment=gift_cards", "model=concat"] if data == "gift_cards" else []
    subprocess.run([sys.executable, "-m", "gnn_mmsearch", "run", *overrides, f"seed={seed}", "logger=none",
                    f"hydra.run.dir={run_dir}"], check=True)


def value(metrics: dict, row: str, column: str) -> float | None:
    key = {"served": column, "graph_space": f"graph_space/{column}", "bound": f"bound/{column}"}.get(
        row, f"baseline/{row}/{column}")
    return metrics.get(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--data", choices=["synthetic", "gift_cards"], default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-run", action="store_true", help="aggregate the finished runs only")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_quality"))
    args = parser.parse_args()
    metrics = []
    for seed in args.seeds:
        run_dir = args.runs_dir / f"seed{seed}"
        if not RunDir(run_dir).finished and not args.no_run:
            run(seed, args.data, run_dir)
        metrics.append(RunDir(run_dir).require("search").metrics())
    table = {}
    for row in ROWS:
        cells = {}
        for column in HEADLINE:
            values = [v for m in metrics if (v := value(m, row, column)) is not None]
            if values:
                cells[column] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        if cells:
            table[row] = cells
    shown = [c for c in HEADLINE if any(c in cells for cells in table.values())]
    lines = ["| " + " | ".join(["row", *shown]) + " |", "|" + "---|" * (len(shown) + 1)]
    for row, cells in table.items():
        lines.append("| " + " | ".join([ROWS[row], *(f"{cells[c][0]:.3f} ± {cells[c][1]:.3f}" if c in cells else "–"
                                                      for c in shown)]) + " |")
    md = "\n".join(lines)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(f"{args.data}, seeds {args.seeds}, mean ± std\n\n{md}\n")
    args.out.with_suffix(".json").write_text(json.dumps({"data": args.data, "seeds": args.seeds, "runs": str(args.runs_dir),
                                                         "table": table}, indent=1))


if __name__ == "__main__":
    main()
