"""Experiment tracking: wandb offline files inside the run directory, always finished, logger=none does nothing."""
from __future__ import annotations

import time

import pytest
from omegaconf import OmegaConf

from gnn_mmsearch.tracking import start_run


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))


def _cfg(name="wandb"):
    logger = {"name": name, "mode": "offline", "project": "test", "entity": None, "group": None, "tags": []}
    return OmegaConf.create({"seed": 3, "model": {"fusion": "attention"}, "logger": logger})


def _wandb_file(run_dir, *keys: bytes, timeout: float = 10.0) -> bytes:
    """The run's offline transaction log, once it holds ``keys``: wandb's service may write the last records a
    moment after ``finish()`` returns."""
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    deadline = time.monotonic() + timeout
    data = files[0].read_bytes()
    while not all(k in data for k in keys) and time.monotonic() < deadline:
        time.sleep(0.05)
        data = files[0].read_bytes()
    return data


def test_offline_run_logs_config_epochs_and_final_metrics(tmp_path):
    with start_run(_cfg(), tmp_path) as tracker:
        for epoch in (1, 2):
            tracker.log_epoch({"epoch": epoch, "train/loss": 1.0 / epoch, "val/recall@10": 0.1 * epoch})
        tracker.log_final({"copurchase/recall@10": 0.42})
    keys = (b"val/recall@10", b"train/loss", b"copurchase/recall@10", b"attention")
    data = _wandb_file(tmp_path, *keys)
    for key in keys:
        assert key in data


def test_consecutive_runs_never_merge(tmp_path):
    import wandb

    for name in ("a", "b"):
        with start_run(_cfg(), tmp_path / name) as tracker:
            tracker.log_epoch({"epoch": 1, "train/loss": 1.0})
        assert wandb.run is None
    assert _wandb_file(tmp_path / "a") and _wandb_file(tmp_path / "b")


def test_run_is_finished_on_error(tmp_path):
    import wandb

    with pytest.raises(RuntimeError, match="boom"):
        with start_run(_cfg(), tmp_path):
            raise RuntimeError("boom")
    assert wandb.run is None and _wandb_file(tmp_path)


def test_logger_none_writes_nothing(tmp_path):
    with start_run(_cfg("none"), tmp_path) as tracker:
        tracker.log_epoch({"epoch": 1, "train/loss": 1.0})
        tracker.log_final({"copurchase/recall@10": 0.5})
    assert not (tmp_path / "wandb").exists()


def test_unknown_logger_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown logger"):
        with start_run(_cfg("tensorboard"), tmp_path):
            pass
