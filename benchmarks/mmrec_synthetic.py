"""``data=mmrec_synthetic``: test Recall@20 split by how often the item was seen in training (cold: never, as the
cold items; tail: 1-5 times; warm: more), for popularity, a co-occurrence item-kNN, a content-only kNN over the
exported item features (the cosine of a user's training items' text and image features to each item), and any
finished top-N runs on that data.

    OMP_NUM_THREADS=1 python benchmarks/mmrec_synthetic.py --runs runs/synth_lightgcn runs/synth_mmgraph

The runs come from ``gnn-mmsearch run task=recommend data=mmrec_synthetic recommender=<name>``; without runs the
default ``data=mmrec_synthetic`` (made in the cache first if need be) gets the baselines only. Writes ``<out>.json``
and ``<out>.md``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf

from gnn_mmsearch.data.mmrec import Interactions, load_interactions
from gnn_mmsearch.evaluation.topn import evaluate_topn
from gnn_mmsearch.jobs.recommend import load_recommender

CONF = Path(__file__).resolve().parents[1] / "conf" / "data" / "mmrec_synthetic.yaml"
TAIL = 5  # training interactions up to which a test item is "tail"


def baselines(data: Interactions) -> dict:
    """Score functions ``users -> [len(users), items]`` of the three baselines."""
    train = data.train.tocsr().astype(np.float32)
    popularity = torch.from_numpy(np.asarray(train.sum(0)).ravel())
    by_item = train.T.tocsr()
    norms = np.sqrt(np.asarray(by_item.multiply(by_item).sum(1)).ravel()) + 1e-9
    cooccurrence = (by_item @ by_item.T).toarray() / norms[:, None] / norms[None, :]
    np.fill_diagonal(cooccurrence, 0)
    content = np.concatenate([f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-9)
                              for f in data.item_features.values()], axis=1)
    return {
        "popularity": lambda users: popularity.repeat(len(users), 1),
        "item_knn": lambda users: torch.from_numpy(np.asarray(train[users.numpy()] @ cooccurrence)),
        "content_knn": lambda users: torch.from_numpy(np.asarray(train[users.numpy()] @ content) @ content.T),
    }


def test_parts(data: Interactions) -> dict[str, sp.csr_matrix]:
    """The test matrix and its cold / tail / warm parts by the item's training count."""
    seen = np.asarray(data.train.sum(0)).ravel()
    test = data.test.tocoo()

    def part(keep: np.ndarray) -> sp.csr_matrix:
        k = keep[test.col]
        return sp.csr_matrix((test.data[k], (test.row[k], test.col[k])), shape=test.shape)

    return {"all": data.test, "cold": part(seen == 0), "tail": part((seen > 0) & (seen <= TAIL)),
            "warm": part(seen > TAIL)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="finished top-N runs on data=mmrec_synthetic")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mmrec_synthetic"))
    args = parser.parse_args()
    models, data = {}, None
    for run in args.runs:
        model, run_data = load_recommender(run)
        if data is not None and run_data.fingerprint != data.fingerprint:
            raise SystemExit(f"{run} was trained on other data than {args.runs[0]}")
        data, models[f"{run.name} ({type(model).__name__})"] = run_data, model.scorer()
    if data is None:
        data = load_interactions(OmegaConf.load(CONF), os.environ.get("GNN_MMSEARCH_CACHE", "~/.cache/gnn_mmsearch"))
    parts = test_parts(data)
    rows = {}
    with torch.no_grad():
        for name, score in {**baselines(data), **models}.items():
            rows[name] = {part: evaluate_topn(score, rel, data.train, (20,))["recall@20"]
                          for part, rel in parts.items()}
    counts = {part: int(rel.nnz) for part, rel in parts.items()}
    header = " | ".join(f"{part} ({counts[part]:,})" for part in parts)
    lines = [f"test Recall@20 by the item's training interactions ({data!r})", "",
             f"| model | {header} |", "|---" * (len(parts) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{r[part]:.4f}" for part in parts) + " |" for name, r in rows.items()]
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"data": repr(data), "fingerprint": data.fingerprint, "test_interactions": counts, "recall@20": rows,
         "runs": [str(r) for r in args.runs]}, indent=2))


if __name__ == "__main__":
    main()
