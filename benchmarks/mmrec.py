"""MMRec protocol on the shared Baby / Sports interactions: the registry's recommenders next to the published
figures, mean ± std over seeds, and a paired test of ours against the strongest baseline run.

Each (model, data, seed) is one ``gnn-mmsearch run experiment=mmrec_<model>_<data> seed=<seed>`` in
``<runs-dir>/mmrec_<model>_<data>/seed<seed>``:

    OMP_NUM_THREADS=1 python benchmarks/mmrec.py --runs-dir runs/mmrec --seeds 0 1 2       # runs the missing ones
    python benchmarks/mmrec.py --runs-dir runs/mmrec --seeds 0 1 2 --no-run                # aggregates finished runs

The paired test compares every test user's Recall@20 (``test_per_user.npz``; averaged over the seeds both models
ran) of ``--ours`` with the baseline of the highest mean test Recall@20: Wilcoxon signed-rank and paired t-test.
Writes ``<out>.json`` (every row's metrics per seed, epochs, wall times, the tests) and ``<out>.md``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from gnn_mmsearch.run_dir import RunDir

MODELS = {"bpr": "BPR-MF", "lightgcn": "LightGCN", "layergcn": "LayerGCN", "xsimgcl": "XSimGCL",
          "mmgraph": "mmgraph (ours)"}  # each has conf/experiment/mmrec_<model>_<data>.yaml
DATASETS = ("baby", "sports")
# Published test Recall@20 / NDCG@20 under MMRec's protocol: BPR and LightGCN from MMRec's evaluation/README.md,
# LayerGCN from the MENTOR paper, XSimGCL from the MSCA paper's table (WWW 2026).
PUBLISHED = {("bpr", "baby"): (0.0575, 0.0249), ("bpr", "sports"): (0.0653, 0.0298),
             ("lightgcn", "baby"): (0.0754, 0.0328), ("lightgcn", "sports"): (0.0864, 0.0387),
             ("layergcn", "baby"): (0.0820, 0.0355), ("layergcn", "sports"): (0.0916, 0.0406),
             ("xsimgcl", "baby"): (0.0887, 0.0397), ("xsimgcl", "sports"): (0.1011, 0.0458)}
COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def run_dir(runs_dir: Path, model: str, data: str, seed: int) -> Path:
    return runs_dir / f"mmrec_{model}_{data}" / f"seed{seed}"


def run_one(model: str, data: str, seed: int, path: Path) -> None:
    subprocess.run([sys.executable, "-m", "gnn_mmsearch", "run", f"experiment=mmrec_{model}_{data}", f"seed={seed}",
                    f"hydra.run.dir={path}"], check=True)


def row(model: str, data: str, paths: list[Path]) -> dict:
    runs = [RunDir(p).require("recommend") for p in paths]
    infos = [r.info() for r in runs]
    out = {"model": model, "data": data, "runs": [str(p) for p in paths],
           "seeds": [r.config().seed for r in runs], "metrics": [r.metrics() for r in runs],
           "best_epoch": [i["best_epoch"] for i in infos], "epochs": [i["epochs"] for i in infos],
           "total_min": [i["timings_s"]["total_s"] / 60 for i in infos]}
    if (model, data) in PUBLISHED:
        out["published"] = dict(zip(("recall@20", "ndcg@20"), PUBLISHED[model, data]))
    return out


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt(values: list[float], digits: int = 4) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def recall_mean(r: dict) -> float:
    return statistics.fmean(m["test/recall@20"] for m in r["metrics"])


def paired_test(ours: dict, baseline: dict, metric: str = "recall@20") -> dict:
    """Wilcoxon signed-rank and paired t-test on every test user's ``metric``, averaged over the common seeds."""
    common = sorted(set(ours["seeds"]) & set(baseline["seeds"]))

    def per_user(r: dict) -> tuple[np.ndarray, np.ndarray]:
        arrays = [np.load(Path(p) / RunDir.PER_USER) for p, s in zip(r["runs"], r["seeds"]) if s in common]
        if any(not np.array_equal(a["users"], arrays[0]["users"]) for a in arrays):
            raise ValueError(f"{r['model']}: the seeds ranked different test users")
        return np.mean([a[metric] for a in arrays], axis=0), arrays[0]["users"]

    (a, users_a), (b, users_b) = per_user(ours), per_user(baseline)
    if not np.array_equal(users_a, users_b):
        raise ValueError(f"{ours['model']} and {baseline['model']} ranked different test users")
    return {"ours": ours["model"], "baseline": baseline["model"], "data": ours["data"], "metric": metric,
            "seeds": common, "users": int(a.size), "mean_diff": float((a - b).mean()),
            "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue), "ttest_p": float(stats.ttest_rel(a, b).pvalue)}


def to_markdown(rows: list[dict], tests: list[dict]) -> str:
    lines = ["| data | model | seeds | " + " | ".join(c.replace("recall", "R").replace("ndcg", "N") for c in COLUMNS)
             + " | R@20 vs published | N@20 vs published | kept / run epochs | wall time |",
             "|---|---|---|" + "---|" * (len(COLUMNS) + 4)]
    for r in rows:
        cells = [fmt([m[f"test/{c}"] for m in r["metrics"]]) for c in COLUMNS]
        pub = r.get("published")
        vs = ([f"{p:.4f} ({100 * (mean_std([m[f'test/{k}'] for m in r['metrics']])[0] / p - 1):+.1f}%)"
               for k, p in pub.items()] if pub else ["–", "–"])
        epochs = ", ".join(f"{b} / {e}" for b, e in zip(r["best_epoch"], r["epochs"]))
        lines.append(f"| {r['data']} | {MODELS.get(r['model'], r['model'])} | {len(r['seeds'])} | "
                     + " | ".join(cells + vs) + f" | {epochs} | {fmt(r['total_min'], 1)} min |")
    for t in tests:
        lines.append(f"\n{t['data']}: {MODELS.get(t['ours'], t['ours'])} vs {MODELS.get(t['baseline'], t['baseline'])}, "
                     f"test {t['metric']} per user ({t['users']} users, mean over seeds {t['seeds']}): mean difference "
                     f"{t['mean_diff']:+.4f}, Wilcoxon signed-rank p = {t['wilcoxon_p']:.2g}, "
                     f"paired t-test p = {t['ttest_p']:.2g}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True, help="holds mmrec_<model>_<data>/seed<N>")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--ours", default="mmgraph", choices=list(MODELS))
    parser.add_argument("--no-run", action="store_true", help="only aggregate the runs already finished")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mmrec"))
    args = parser.parse_args()
    rows, tests = [], []
    for data in args.datasets:
        table = []
        for model in args.models:
            paths = []
            for seed in args.seeds:
                path = run_dir(args.runs_dir, model, data, seed)
                if not RunDir(path).finished:
                    if args.no_run:
                        print(f"skipped (not run): {path}")
                        continue
                    run_one(model, data, seed, path)
                paths.append(path)
            if paths:
                table.append(row(model, data, paths))
        rows += table
        ours = next((r for r in table if r["model"] == args.ours), None)
        baselines = [r for r in table if r["model"] != args.ours]
        if ours and baselines:
            tests.append(paired_test(ours, max(baselines, key=recall_mean)))
    md = to_markdown(rows, tests)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "paired_tests": tests}, indent=1))
    args.out.with_suffix(".md").write_text(md + "\n")


if __name__ == "__main__":
    main()
