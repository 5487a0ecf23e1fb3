"""Experiment tracking: one wandb run per pipeline run (resolved config, per-epoch rows, final metrics).

    with start_run(cfg, run_dir) as tracker:      # cfg.logger: wandb (mode offline | online) or none
        Trainer(..., on_epoch_end=tracker.log_epoch).fit()
        tracker.log_final(metrics)

Offline runs are written under ``<run_dir>/wandb`` (``wandb sync`` uploads them later), so the jobs of a multirun
never share files, and every run is finished on exit (with exit code 1 on an error), so runs never merge.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf


class Tracker:
    """Logs to a wandb run; without one (``logger=none``) every call does nothing."""

    def __init__(self, run=None):
        self.run = run

    def log_epoch(self, row: dict) -> None:
        if self.run is not None:
            self.run.log(row, step=row["epoch"])

    def log_final(self, metrics: dict[str, float]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)


@contextlib.contextmanager
def start_run(cfg: DictConfig, run_dir: str | Path) -> Iterator[Tracker]:
    """A :class:`Tracker` for the duration of one run, as configured by ``cfg.logger`` (no logger = none)."""
    logger = cfg.get("logger") or {"name": "none"}
    if logger["name"] == "none":
        yield Tracker()
        return
    if logger["name"] != "wandb":
        raise ValueError(f"unknown logger {logger['name']!r} (wandb | none)")
    import wandb

    run = wandb.init(dir=str(run_dir), mode=logger.mode, project=logger.project, entity=logger.entity,
                     group=logger.group, tags=list(logger.tags), name=_run_name(Path(run_dir)),
                     config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")
    try:
        yield Tracker(run)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()


def _run_name(run_dir: Path) -> str:
    """The job's Hydra overrides (``model.fusion=concat,seed=1``) when there are some, else the directory name."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().job.override_dirname:
        return HydraConfig.get().job.override_dirname
    return run_dir.name
