"""The top-N recommendation job (``data.source: mmrec``): interactions -> recommender -> MMRec protocol.

Train on ``x_label`` 0, select the epoch on validation (``x_label`` 1) Recall@20 with early stopping, report the
test split (``x_label`` 2): Recall / NDCG / Precision / MAP at ``eval.ks``, full ranking over all items with
each user's training items excluded, cold-start users filtered. Writes ``metrics.json`` (``test/*`` and the
kept epoch's ``val/*``), ``history.json``, ``config.yaml``, ``run.json`` and ``model.pt`` to the run directory.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .data.mmrec import Interactions, load_inter
from .models import Recommender, create_recommender
from .search import RUN_INFO
from .tracking import Tracker
from .training.topn import TopNTrainConfig, TopNTrainer
from .utils import seed_everything, write_json


def run_topn(cfg: DictConfig, run_dir: Path, tracker: Tracker) -> dict[str, float]:
    timings, t0 = {}, time.perf_counter()
    seed_everything(cfg.seed)
    data = load_inter(cfg.data.path, cfg.data.filter_cold_start)
    timings["data_s"] = time.perf_counter() - t0

    model = build_recommender(cfg, data)
    trainer = TopNTrainer(model, data, TopNTrainConfig(**cfg.train), cfg.seed, tuple(cfg.eval.ks),
                          on_epoch_end=tracker.log_epoch)
    t = time.perf_counter()
    history = trainer.fit()
    timings["train_s"] = time.perf_counter() - t

    evaluated = [row for row in history if f"val/{cfg.train.monitor}" in row]
    best = max(evaluated, key=lambda row: row[f"val/{cfg.train.monitor}"])
    metrics = {f"test/{k}": v for k, v in trainer.evaluate("test").items()}
    metrics.update({k: v for k, v in best.items() if k.startswith("val/")})
    timings["total_s"] = time.perf_counter() - t0

    torch.save(model.state_dict(), run_dir / "model.pt")
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "history.json", history)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    write_json(run_dir / RUN_INFO, {
        "seed": cfg.seed, "data_fingerprint": data.fingerprint, "dataset": data.name, "num_users": data.num_users,
        "num_items": data.num_items, "load_report": data.report.as_dict(), "epochs": len(history),
        "best_epoch": best["epoch"], "timings_s": timings})
    print(format_topn(metrics, cfg.eval.ks))
    print(f"best epoch {best['epoch']} of {len(history)}; timings: "
          + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
    print(f"run directory: {run_dir.resolve()}")
    return metrics


def build_recommender(cfg: DictConfig, data: Interactions) -> Recommender:
    params = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    return create_recommender(cfg.model.name, data.train, data.item_features, **params)


def load_recommender(run_dir: str | Path) -> tuple[Recommender, Interactions]:
    """The trained recommender of a finished top-N run and the interactions it was trained on."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished top-N run (no model.pt)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    data = load_inter(cfg.data.path, cfg.data.filter_cold_start)
    trained_on = json.loads((run_dir / RUN_INFO).read_text())["data_fingerprint"]
    if data.fingerprint != trained_on:
        raise ValueError(f"{cfg.data.path} changed since {run_dir} was trained (fingerprint {data.fingerprint}, "
                         f"run {trained_on})")
    model = build_recommender(cfg, data)
    model.load_state_dict(torch.load(run_dir / "model.pt"))
    return model.eval(), data


def format_topn(metrics: dict[str, float], ks) -> str:
    """Test metrics as a table: one row per metric, one column per K."""
    names = ("recall", "ndcg", "precision", "map")
    lines = ["test".ljust(11) + "".join(f"@{k:<8}" for k in ks)]
    lines += [name.ljust(11) + "".join(f"{metrics[f'test/{name}@{k}']:<9.4f}" for k in ks) for name in names]
    return "\n".join(lines)
