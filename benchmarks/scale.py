"""Large synthetic catalogs end to end (issue 14): peak RSS, time per epoch, training throughput, end-to-end wall
and metrics of ``gnn-mmsearch run`` at given catalog sizes, one run per size and batching mode.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/scale.py --sizes 100000 1000000 --runs-dir /work/scale_runs
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/scale.py --sizes 20000 100000 --batching full --max-epochs 2 \\
        --runs-dir /work/scale_runs
    python benchmarks/scale.py --sizes 100000 1000000 --runs-dir /work/scale_runs --no-run     # aggregate only
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/scale.py --full-batch-step 50000 100000 200000 \
        --runs-dir /work/scale_runs                            # memory of one full-batch training step

``--full-batch-step`` measures where full batching stops fitting without extracting features: one training step of
the default encoder over the whole generated catalog graph (random stand-ins for the MiniLM features, no images:
memory does not depend on their values), each size in its own process: its peak RSS before and after the step.

Every run uses ``LARGE`` (no images, titles only, relevance head off, FAISS IVF-PQ, ``eval.max_queries``; see
benchmarks/README.md) plus ``--set`` overrides; its catalog and features are cached under ``<runs-dir>/cache``, so a
second run of a size skips generation and MiniLM. Peak RSS is the run process's ``ru_maxrss`` (``os.wait4``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gnn_mmsearch._atomic import write_json
from gnn_mmsearch.run_dir import RunDir

LARGE = ["logger=none", "data.missing_image_rate=1.0", "data.missing_description_rate=1.0", "relevance=none",
         "index=faiss", "eval.max_queries=1000", "eval.examples=[]", "~eval.baselines.raw_image",
         "~eval.baselines.raw_concat"]
METRICS = ("val/recall@10", "copurchase/recall@10", "graph_space/copurchase/recall@10", "text_query/recall@10",
           "attribute_query/ndcg@10", "index/recall@10")


def run(size: int, batching: str, max_epochs: int, extra: list[str], runs_dir: Path) -> dict:
    """One ``gnn-mmsearch run``; returns its wall time and peak RSS (its log goes next to its run directory)."""
    name = f"{batching}_{size}"
    overrides = [*LARGE, f"data.num_products={size}", f"train.batching={batching}", f"train.max_epochs={max_epochs}",
                 f"cache_dir={runs_dir / 'cache'}", f"hydra.run.dir={runs_dir / name}", *extra]
    print(f"[scale] {name}: gnn-mmsearch run {' '.join(overrides)}", flush=True)
    started = time.perf_counter()
    with open(runs_dir / f"{name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gnn_mmsearch", "run", *overrides], stdout=log,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed (exit {os.waitstatus_to_exitcode(status)}): see {runs_dir / f'{name}.log'}")
    measured = {"overrides": overrides, "wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20}
    write_json(runs_dir / name / "scale.json", measured)
    return measured


def row(size: int, batching: str, runs_dir: Path) -> dict:
    """The figures of a finished run."""
    run_dir = RunDir(runs_dir / f"{batching}_{size}")
    measured = json.loads((run_dir.path / "scale.json").read_text())
    info, metrics = run_dir.require("search").info(), run_dir.metrics()
    epochs = info["epoch_timings"]
    train_s = sum(e["train_s"] for e in epochs)
    cap = [o.split("=", 1)[1] for o in measured["overrides"] if o.startswith("eval.max_queries=")][-1]
    return {"size": size, "batching": batching, "products": info["num_products"], "edges": info["num_edges"],
            "max_queries": int(cap), "links_per_epoch": epochs[0]["links"],
            "epochs": len(epochs), "epoch_s": train_s / len(epochs),
            "validate_s": sum(e["validate_s"] for e in epochs) / len(epochs),
            "links_per_s": sum(e["links"] for e in epochs) / train_s, "peak_rss_gib": measured["peak_rss_gib"],
            "wall_s": measured["wall_s"], "timings_s": info["timings_s"], "features": info["features"],
            "metrics": {k: metrics[k] for k in METRICS if k in metrics}, "overrides": measured["overrides"]}


def markdown(rows: list[dict]) -> str:
    head = ["products", "edges", "batching", "links / epoch", "epochs", "s / epoch", "links/s", "validation s",
            "eval.max_queries", "peak RSS GiB",
            "catalog s", "features s", "train s", "eval+index s", "wall s", *METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["timings_s"]
        cells = [f"{r['products']:,}", f"{r['edges']:,}", r["batching"], f"{r['links_per_epoch']:,}", r["epochs"],
                 f"{r['epoch_s']:.1f}", f"{r['links_per_s']:,.0f}", f"{r['validate_s']:.1f}", r["max_queries"],
                 f"{r['peak_rss_gib']:.2f}",
                 f"{t['catalog_s']:.0f}", f"{t['features_s']:.0f}", f"{t['train_s']:.0f}", f"{t['eval_index_s']:.0f}",
                 f"{r['wall_s']:.0f}", *(f"{r['metrics'][k]:.4f}" if k in r["metrics"] else "–" for k in METRICS)]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def full_batch_step(size: int, cache_dir: Path) -> dict:
    """Peak RSS of one full-batch training step (forward, loss, backward) of the default encoder on the generated
    ``size``-product catalog's graph; run it in a fresh process."""
    import resource

    import torch

    from gnn_mmsearch.data import load_catalog, split_edges, split_products
    from gnn_mmsearch.features import ProductFeatures
    from gnn_mmsearch.models import EncoderConfig, MultimodalGraphEncoder
    from gnn_mmsearch.training import TrainConfig, Trainer

    catalog = load_catalog({"source": "synthetic", "num_products": size, "missing_image_rate": 1.0,
                            "missing_description_rate": 1.0}, cache_dir / "catalogs")
    split = split_edges(catalog, "also_buy", ["also_buy", "bought_together"], 0.1, 0.1, 0)
    n, g = len(catalog), torch.Generator().manual_seed(0)
    feats = ProductFeatures(torch.zeros(1, 1280).expand(n, -1), torch.zeros(n, dtype=torch.bool),
                            torch.nn.functional.normalize(torch.randn(n, 384, generator=g), dim=-1),
                            torch.ones(n, dtype=torch.bool))
    model = MultimodalGraphEncoder(EncoderConfig(image_dim=1280, text_dim=384, hidden_dim=256, out_dim=128))
    config = TrainConfig(batching="full")
    trainer = Trainer(model, feats, split, split_products(n, 0.1, 0), config)
    graph = split.message_passing("train")
    del catalog
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started = time.perf_counter()
    batch = split.train[:, :config.batch_size]
    trainer._step_loss(graph, batch, torch.randint(0, n, (config.num_negatives,), generator=g)).backward()
    return {"size": n, "graph_edges": graph.size(1), "peak_rss_before_gib": before,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "step_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[])
    parser.add_argument("--batching", nargs="+", choices=["neighbor", "full"], default=["neighbor"])
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--no-run", action="store_true", help="aggregate the finished runs only")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale"))
    parser.add_argument("--full-batch-step", type=int, nargs="+", metavar="SIZE",
                        help="only measure one full-batch training step at these sizes")
    parser.add_argument("--step-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    if args.step_child:
        print(json.dumps(full_batch_step(args.step_child, args.runs_dir / "cache")))
        return
    if args.full_batch_step:
        steps = [json.loads(subprocess.run([sys.executable, __file__, "--runs-dir", str(args.runs_dir),
                                            "--step-child", str(size)], check=True, capture_output=True,
                                           text=True).stdout.splitlines()[-1]) for size in args.full_batch_step]
        saved = args.out.parent / f"{args.out.name}_full_batch_step.json"
        write_json(saved, steps)
        print("\n".join(json.dumps(s) for s in steps))
        return
    for size in sorted(args.sizes):
        for batching in args.batching:
            if not args.no_run:
                run(size, batching, args.max_epochs, args.set, args.runs_dir)
    saved = args.out.with_suffix(".json")
    rows = {(r["size"], r["batching"]): r for r in (json.loads(saved.read_text()) if saved.exists() else [])}
    rows.update({(s, b): row(s, b, args.runs_dir) for s in args.sizes for b in args.batching})
    rows = [rows[k] for k in sorted(rows)]
    write_json(saved, rows)
    table = markdown(rows)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
