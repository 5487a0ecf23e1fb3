"""Real multimodal benchmark on Amazon 2018 Gift Cards: the ``experiment=gift_cards`` sweep (text only, image only,
concat, attention; 0 and 2 graph layers; seeds 0, 1, 2) aggregated into mean ± std per row.

    OMP_NUM_THREADS=1 python benchmarks/gift_cards.py                        # runs the 24 jobs, then aggregates
    python benchmarks/gift_cards.py --sweep multirun/gift_cards --no-run     # aggregates a finished sweep

Writes ``<out>.json`` (every metric per row: mean, std, per-seed values; wall times; the command) and ``<out>.md``
(the table, built by ``gnn_mmsearch.report``). ``–`` marks an absent metric: a text-only model has no image-only
product embedding, so it has no title -> image score.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


from gnn_mmsearch.data import Catalog, split_products
from gnn_mmsearch.report import Group, find_jobs, group_jobs, to_markdown
from gnn_mmsearch.run_dir import RunDir

ROWS = {"text_only": "text only", "image_only": "image only", "concat": "concat", "attention": "attention"}
METRICS = ("copurchase/recall@10", "copurchase/ndcg@10", "copurchase/recall@20", "copurchase/ndcg@20",
           "crossmodal/recall@1", "crossmodal/recall@5", "crossmodal/recall@10", "crossmodal/mrr@10",
           "text_query/recall@10", "epochs", "total_s")


def sweep_args(sweep: Path) -> list[str]:
    """``gnn-mmsearch run -m experiment=gift_cards`` into ``sweep`` (basic launcher: one job at a time)."""
    return ["-m", "gnn_mmsearch", "run", "-m", "experiment=gift_cards", f"hydra.sweep.dir={sweep}"]


def run_sweep(sweep: Path) -> float:
    """Runs the sweep; returns its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *sweep_args(sweep)], check=True)
    return time.perf_counter() - start


def load_rows(sweep: Path) -> list[Group]:
    """One group per (model, layers), in table order, labelled ``<model>, <layers> layers``; ``total_s`` added."""
    jobs = find_jobs([sweep])
    for job in jobs:
        job.metrics["total_s"] = RunDir(job.path).info()["timings_s"]["total_s"]
    groups = group_jobs(jobs)
    for g in groups:
        g.label = f"{ROWS[g.setting('model')]}, {g.setting('model.gnn.layers')} layers"
    return sorted(groups, key=lambda g: (list(ROWS).index(g.setting("model")), int(g.setting("model.gnn.layers"))))


def crossmodal_queries(job_path: Path) -> int:
    """How many title -> image queries a job had: held-out products with an image and a title."""
    run = RunDir(job_path)
    cfg = run.config()
    catalog = Catalog.load(run.info()["catalog_root"])
    held_out = split_products(len(catalog), cfg.split.query_holdout_ratio, cfg.seed)
    return sum(1 for i in held_out.nonzero().flatten().tolist()
               if catalog.products[i].image_path and (catalog.products[i].title or "").strip())


def summary(groups: list[Group]) -> list[dict]:
    rows = []
    for g in groups:
        metrics = {}
        for name in sorted({m for j in g.jobs for m in j.metrics}):
            mean, std = g.mean_std(name)
            metrics[name] = {"mean": mean, "std": std, "values": g.values(name)}
        rows.append({"row": g.label, "model": g.setting("model"), "gnn_layers": int(g.setting("model.gnn.layers")),
                     "seeds": [j.seed for j in g.jobs], "metrics": metrics})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("multirun/gift_cards"), help="the sweep directory")
    parser.add_argument("--no-run", action="store_true", help="aggregate an existing sweep, do not run it")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gift_cards"))
    args = parser.parse_args()

    wall_s = None if args.no_run else run_sweep(args.sweep)
    groups = load_rows(args.sweep)
    jobs = [j for g in groups for j in g.jobs]
    queries = {j.seed: crossmodal_queries(j.path) for j in groups[0].jobs}
    result = {"sweep": str(args.sweep), "command": " ".join(["python", *sweep_args(args.sweep)]),
              "sweep_wall_s": wall_s,
              "jobs": len(jobs), "jobs_total_s": sum(j.metrics["total_s"] for j in jobs),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "crossmodal_queries_per_seed": queries,
              "rows": summary(groups)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = to_markdown(groups, METRICS)
    args.out.with_suffix(".md").write_text(
        f"# Amazon 2018 Gift Cards: {len(jobs)} runs, mean ± sample std over seeds (best in bold)\n\n{table}\n\n"
        "– : absent (a text-only model has no image-only product embedding).\n")
    print(table)


if __name__ == "__main__":
    main()
