"""Aggregate a Hydra multirun directory into a mean +- std table over seeds.

    python benchmarks/summarize.py multirun/2026-11-24_10-00-00 --name graph_vs_content \
        --metrics copurchase/recall@10 copurchase/ndcg@10 text_query/recall@10

Groups the jobs by their overrides (``seed=...`` left out), prints a markdown table and writes
``benchmarks/results/<name>.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

RESULTS = Path(__file__).parent / "results"


def collect(sweep_dir: Path) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json")):
        job = metrics_file.parent
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        key = " ".join(o for o in overrides if not o.startswith("seed=")) or "(defaults)"
        run = json.loads((job / "run.json").read_text())
        groups.setdefault(key, []).append({**json.loads(metrics_file.read_text()),
                                           "train_s": run["timings_s"]["train_s"], "seed": run["seed"]})
    return groups


def summarize(groups: dict[str, list[dict]], metrics: list[str]) -> tuple[str, dict]:
    table = {}
    lines = ["| configuration | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for key, runs in groups.items():
        row = {}
        for m in metrics:
            values = [r[m] for r in runs if m in r]
            row[m] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                      "values": values}
        table[key] = {"seeds": sorted(r["seed"] for r in runs), **row}
        cells = [f"{row[m]['mean']:.4f} ± {row[m]['std']:.4f}" for m in metrics]
        lines.append(f"| {key} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--metrics", nargs="+",
                        default=["copurchase/recall@10", "copurchase/ndcg@10", "text_query/recall@10", "train_s"])
    args = parser.parse_args()
    markdown, table = summarize(collect(args.sweep_dir), args.metrics)
    print(markdown)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(markdown + "\n")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
