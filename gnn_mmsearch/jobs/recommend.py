"""The top-N recommendation job (``task=recommend``): MMRec interactions -> recommender -> MMRec protocol.

Train on ``x_label`` 0, select the epoch on validation (``x_label`` 1) with early stopping, report the test split
(``x_label`` 2): Recall / NDCG / Precision / MAP at ``eval.ks``, full ranking over all items with each user's
training items excluded, cold-start users filtered. Writes the run directory (``model.pt`` holds the weights).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .. import distributed
from .._atomic import atomic_file
from .._registry import import_modules
from ..data.mmrec import Interactions, load_inter
from ..device import resolve_device
from ..evaluation import format_metrics
from ..evaluation.topn import per_user_topn, topn_metrics
from ..models import Recommender, create_recommender
from ..run_dir import RunDir
from ..tracking import Tracker
from ..training.topn import TopNTrainConfig, TopNTrainer
from ..utils import seed_everything


def run(cfg: DictConfig, run: RunDir, tracker: Tracker) -> dict[str, float]:
    """Run the top-N job on a validated config; writes ``run`` and returns the flat metrics."""
    timings, t0 = {}, time.perf_counter()
    seed_everything(cfg.seed)
    data = load_inter(cfg.data.path, cfg.data.filter_cold_start)
    timings["data_s"] = time.perf_counter() - t0

    model = build_recommender(cfg.recommender, data).to(resolve_device(cfg.device))
    trainer = TopNTrainer(model, data, TopNTrainConfig(**cfg.train), cfg.seed, tuple(cfg.eval.ks),
                          on_epoch_end=tracker.log_epoch)
    t = time.perf_counter()
    history = trainer.fit()
    timings["train_s"] = time.perf_counter() - t
    if not distributed.is_main():
        return {}

    evaluated = [row for row in history if f"val/{cfg.train.monitor}" in row]
    best = max(evaluated, key=lambda row: row[f"val/{cfg.train.monitor}"])
    users, top = trainer.rank("test", max(cfg.eval.ks))
    metrics = {f"test/{k}": v for k, v in topn_metrics(users, top, data.test, cfg.eval.ks).items()}
    metrics.update({k: v for k, v in best.items() if k.startswith("val/")})
    timings["total_s"] = time.perf_counter() - t0

    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, run / run.RECOMMENDER)
    with atomic_file(run / run.PER_USER) as f:
        np.savez(f, users=users, **per_user_topn(users, top, data.test, cfg.eval.ks))
    run.write_results("recommend", cfg, metrics, history, {
        "data_fingerprint": data.fingerprint, "dataset": data.name, "num_users": data.num_users,
        "num_items": data.num_items, "load_report": data.report.as_dict(), "epochs": len(history),
        "best_epoch": best["epoch"], "timings_s": timings})
    print(format_metrics(metrics))
    print(f"best epoch {best['epoch']} of {len(history)}; timings: "
          + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
    print(f"run directory: {run.path.resolve()}")
    return metrics


def build_recommender(recommender: DictConfig, data: Interactions) -> Recommender:
    """The recommender a ``recommender`` config names (``name`` + its options) for ``data``."""
    options = {k: v for k, v in OmegaConf.to_container(recommender, resolve=True).items() if k != "name"}
    return create_recommender(recommender.name, data.train, data.item_features, **options)


def load_recommender(run_dir: str | Path) -> tuple[Recommender, Interactions]:
    """The trained recommender of a finished top-N run and the interactions it was trained on."""
    run = RunDir(run_dir).require("recommend")
    cfg = run.config()
    import_modules(cfg.get("imports") or [])
    data = load_inter(cfg.data.path, cfg.data.filter_cold_start)
    trained_on = run.info()["data_fingerprint"]
    if data.fingerprint != trained_on:
        raise ValueError(f"{cfg.data.path} changed since {run.path} was trained (fingerprint {data.fingerprint}, "
                         f"run {trained_on})")
    model = build_recommender(cfg.recommender, data)
    model.load_state_dict(torch.load(run / run.RECOMMENDER, map_location="cpu"))
    return model.eval(), data
