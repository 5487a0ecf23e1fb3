"""Device check: the default search job and ``experiment=mmrec_lightgcn_baby`` on one device, with the time per
epoch and the main metrics, in one go (written for a GPU machine; ``--quick`` makes it a short CPU smoke run).

    python benchmarks/gpu_check.py                                  # device=auto (the GPU), full jobs
    python benchmarks/gpu_check.py --nproc 2                        # + the mmrec job under torchrun on 2 GPUs
    python benchmarks/gpu_check.py --precision bf16                 # feature extraction under bf16 autocast
    OMP_NUM_THREADS=1 python benchmarks/gpu_check.py --quick --device cpu   # tiny configs, a few minutes on CPU

Prints one line per job and writes ``<out>.json`` (default ``benchmarks/results/gpu_check_<device type>.json``;
``--quick`` runs go to ``..._quick.json``). Runs land under ``--runs-dir`` (default ``runs/gpu_check``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from gnn_mmsearch.run_dir import RunDir

QUICK = {"search": ["data.num_products=200", "data.num_users=30", "data.image_size=48", "train.max_epochs=3",
                    "relevance.enabled=false", "eval.examples=[]"],
         "mmrec": ["train.max_epochs=2"]}
METRICS = {"search": ("copurchase/recall@10", "text_query/recall@10", "image_query/recall@10"),
           "mmrec": ("test/recall@20", "test/ndcg@20")}


def run(name: str, overrides: list[str], run_dir: Path, nproc: int = 1) -> dict:
    """One ``gnn-mmsearch run`` (under ``torchrun`` when ``nproc`` > 1); its timings and metrics."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                 "-m", "gnn_mmsearch"] if nproc > 1 else [sys.executable, "-m", "gnn_mmsearch"])
    started = time.perf_counter()
    subprocess.run([*launcher, "run", "logger=none", f"hydra.run.dir={run_dir}", *overrides], check=True)
    wall = time.perf_counter() - started
    run_ = RunDir(run_dir)
    info, metrics, history = run_.info(), run_.metrics(), json.loads((run_dir / RunDir.HISTORY).read_text())
    timings = info["timings_s"]
    epoch_s = [row["train/epoch_s"] for row in history if "train/epoch_s" in row]
    return {"job": name, "nproc": nproc, "overrides": overrides, "run": str(run_dir), "epochs": info["epochs"],
            # the search trainer validates every epoch: its time per epoch includes validation
            "s_per_epoch": timings["train_s"] / max(1, info["epochs"]),
            "train_s_per_epoch_median": statistics.median(epoch_s) if epoch_s else None,
            "timings_s": timings, "wall_s": wall, "metrics": {k: metrics[k] for k in METRICS[name.split("@")[0]]
                                                                  if k in metrics}}


def device_name(device: str) -> str:
    import torch

    from gnn_mmsearch.device import resolve_device

    resolved = resolve_device(device)
    return torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else f"cpu ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--quick", action="store_true", help="tiny configs: a smoke run that also fits a CPU")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="feature-extraction autocast (encoder.precision)")
    parser.add_argument("--nproc", type=int, default=1, help="also run the mmrec job under torchrun on N processes")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/gpu_check"))
    parser.add_argument("--out", type=Path, help="results file without suffix")
    ns = parser.parse_args()
    name = device_name(ns.device)
    kind = "cpu" if name.startswith("cpu") else "cuda"
    out = ns.out or Path(__file__).parent / "results" / f"gpu_check_{kind}{'_quick' if ns.quick else ''}"
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    common = [f"device={ns.device}"]
    jobs = [("search", [*common, f"encoder.precision={ns.precision}", *(QUICK["search"] if ns.quick else [])], 1),
            ("mmrec", [*common, "experiment=mmrec_lightgcn_baby", *(QUICK["mmrec"] if ns.quick else [])], 1)]
    if ns.nproc > 1:
        jobs.append((f"mmrec@{ns.nproc}", jobs[1][1], ns.nproc))
    rows = []
    for job, overrides, nproc in jobs:
        row = run(job.split("@")[0], overrides, ns.runs_dir / stamp / job.replace("@", "_x"), nproc)
        rows.append(row)
        shown = ", ".join(f"{k}={v:.4f}" for k, v in row["metrics"].items())
        print(f"[gpu_check] {job:<9} {name}: {row['epochs']} epochs, {row['s_per_epoch']:.2f} s/epoch "
              f"(train {row['timings_s']['train_s']:.1f} s, total {row['timings_s']['total_s']:.1f} s); {shown}")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": name, "device_arg": ns.device, "quick": ns.quick, "precision": ns.precision, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(f"[gpu_check] wrote {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
