"""MMRec protocol on the shared Baby / Sports interactions: BPR-MF, LightGCN and the framework's ``mmgraph``,
each row one ``gnn-mmsearch run experiment=mmrec_<model>_<data>``, next to MMRec's published figures.

    OMP_NUM_THREADS=1 python benchmarks/mmrec.py --runs-dir runs/mmrec                # runs the missing rows, then
    python benchmarks/mmrec.py --runs-dir runs/mmrec --no-run                         # aggregates finished runs

Writes ``<out>.json`` (every test metric, the kept epoch, epochs run and wall time per row) and ``<out>.md``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from gnn_mmsearch.run_dir import RunDir

MODELS = {"bpr": "BPR-MF", "lightgcn": "LightGCN", "mmgraph": "mmgraph (ours)"}
DATASETS = ("baby", "sports")
PUBLISHED = {("bpr", "baby"): (0.0575, 0.0249), ("bpr", "sports"): (0.0653, 0.0298),   # test Recall@20, NDCG@20
             ("lightgcn", "baby"): (0.0754, 0.0328), ("lightgcn", "sports"): (0.0864, 0.0387)}


def run_row(experiment: str, run_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "gnn_mmsearch", "run", f"experiment={experiment}",
                    f"hydra.run.dir={run_dir}"], check=True)


def row(model: str, data: str, run_dir: Path) -> dict:
    run = RunDir(run_dir).require("recommend")
    metrics, info = run.metrics(), run.info()
    out = {"model": model, "data": data, "run": str(run_dir), "metrics": metrics, "best_epoch": info["best_epoch"],
           "epochs": info["epochs"], "train_s": info["timings_s"]["train_s"], "total_s": info["timings_s"]["total_s"]}
    if (model, data) in PUBLISHED:
        out["published"] = dict(zip(("recall@20", "ndcg@20"), PUBLISHED[model, data]))
    return out


def to_markdown(rows: list[dict]) -> str:
    lines = ["| data | model | R@10 | R@20 | N@10 | N@20 | P@20 | MAP@20 | R@20 vs published | N@20 vs published "
             "| kept / run epochs | wall time |", "|---|---|---" + "|---" * 9 + "|"]
    for r in rows:
        m = r["metrics"]
        cells = [f"{m[f'test/{k}']:.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20",
                                                  "map@20")]
        pub = r.get("published")
        vs = ([f"{p:.4f} ({100 * (m[f'test/{k}'] / p - 1):+.1f}%)" for k, p in pub.items()] if pub else ["–", "–"])
        lines.append(f"| {r['data']} | {MODELS[r['model']]} | " + " | ".join(cells + vs)
                     + f" | {r['best_epoch']} / {r['epochs']} | {r['total_s'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True, help="one run directory per row, mmrec_<model>_<data>")
    parser.add_argument("--no-run", action="store_true", help="only aggregate the rows already run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mmrec"))
    args = parser.parse_args()
    rows = []
    for data in DATASETS:
        for model in MODELS:
            run_dir = args.runs_dir / f"mmrec_{model}_{data}"
            if not RunDir(run_dir).finished:
                if args.no_run:
                    print(f"skipped (not run): {run_dir}")
                    continue
                run_row(f"mmrec_{model}_{data}", run_dir)
            rows.append(row(model, data, run_dir))
    md = to_markdown(rows)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    args.out.with_suffix(".md").write_text(md + "\n")


if __name__ == "__main__":
    main()
