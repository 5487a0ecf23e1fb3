"""The two jobs ``gnn-mmsearch run`` runs, chosen by ``task=``: ``search`` (the default) and ``recommend``.

    run_job(cfg, run_dir)   # validates cfg, imports cfg.imports, runs the job under its tracker
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from .._registry import import_modules
from ..config import ConfigError, validate
from ..run_dir import RunDir


def run_job(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Validate ``cfg`` (after importing ``cfg.imports``, which may register components), run its task and write
    ``run_dir``; returns the flat metrics. A bad config raises :class:`ConfigError` before anything is loaded.
    Under ``torchrun`` every rank trains (``distributed.py``) and rank 0 alone evaluates, writes ``run_dir`` and
    returns the metrics (the others return ``{}``)."""
    try:
        import_modules(cfg.get("imports") or [])
    except ImportError as err:
        raise ConfigError(str(err)) from None
    cfg = validate(cfg)
    from .. import distributed
    from ..device import resolve_device
    from ..tracking import Tracker, start_run
    from . import recommend, search

    job = {"search": search.run, "recommend": recommend.run}[cfg.task_name]
    with distributed.process_group(resolve_device(cfg.device)):
        if not distributed.is_main():  # the other ranks of a torchrun launch train, and write nothing
            return job(cfg, RunDir(run_dir), Tracker())
        run = RunDir(run_dir).create()
        with start_run(cfg, run.path) as tracker:
            metrics = job(cfg, run, tracker)
            tracker.log_final(metrics)
    return metrics
