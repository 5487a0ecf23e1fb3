"""Sweeps on a cluster: ``hydra/launcher=slurm`` (submitit on SLURM) composes, and the same launcher family runs a
real two-job multirun locally (``hydra/launcher=submitit_local``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from test_distributed import noisy_blocks

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the [cluster] extra")
ROOT = Path(__file__).resolve().parents[1]


def test_slurm_launcher_config_composes_with_overrides():
    with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                           "hydra.launcher.timeout_min=30"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 30, 1, 1)
    assert launcher.submitit_folder.endswith(".submitit/%j")


def test_submitit_local_runs_a_two_job_multirun(env, tmp_path):
    data = noisy_blocks(tmp_path / "blocks.inter")
    sweep = tmp_path / "sweep"
    env_vars = {**os.environ, "OMP_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "gnn_mmsearch", "run", "-m", "hydra/launcher=submitit_local",
                           f"hydra.sweep.dir={sweep}", "task=recommend", f"data.path={data}", "logger=none",
                           "device=cpu", "train.max_epochs=2", "seed=0,1"],
                          capture_output=True, text=True, timeout=600, env=env_vars)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads((sweep / str(n) / "run.json").read_text()) for n in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1] and all(r["task"] == "recommend" for r in runs)
    metrics = [json.loads((sweep / str(n) / "metrics.json").read_text()) for n in (0, 1)]
    assert all("test/recall@20" in m for m in metrics) and metrics[0] != metrics[1]  # two seeds, two results
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) >= 2  # submitit ran each job as its own process
