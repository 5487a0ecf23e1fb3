"""Data-parallel training under ``torchrun`` (two CPU processes, gloo): the same metrics as one process, and only
rank 0 writes a run directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gnn_mmsearch import distributed

ROOT = Path(__file__).resolve().parents[1]


def torchrun(nproc: int, run_dir: Path, *overrides: str) -> dict:
    """``torchrun --nproc_per_node nproc -m gnn_mmsearch run ...`` in a subprocess; returns the run's metrics."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), "-m", "gnn_mmsearch", "run", f"hydra.run.dir={run_dir}", "logger=none",
                           "device=cpu", *overrides], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return json.loads((run_dir / "metrics.json").read_text())


def noisy_blocks(path: Path, users_per_block: int = 40, items_per_block: int = 20, blocks: int = 3) -> Path:
    """Users mostly interact with the items of their block (1 in 5 interactions is any item)."""
    rng = np.random.default_rng(0)
    rows, num_items = ["userID\titemID\tx_label"], items_per_block * blocks
    for u in range(users_per_block * blocks):
        block = u // users_per_block
        items = {int(i) if rng.random() > 0.2 else int(rng.integers(num_items))
                 for i in rng.permutation(items_per_block)[:12] + block * items_per_block}
        rows += [f"{u}\t{i}\t{0 if j < 8 else 1 if j < 10 else 2}" for j, i in enumerate(sorted(items))]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_helpers_are_no_ops_in_one_process():
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert list(range(5))[distributed.shard(5)] == [0, 1, 2, 3, 4]
    assert distributed.from_main(True, None) is True
    step = lambda x: x  # noqa: E731
    assert distributed.data_parallel(None, step) is step


def test_two_processes_train_the_recommender_like_one(env, tmp_path):
    data = noisy_blocks(tmp_path / "blocks.inter")
    options = ["task=recommend", f"data.path={data}", "recommender=lightgcn", "recommender.layers=1",
               "train.max_epochs=8", "train.lr=0.01", "train.batch_size=128", "train.patience=100"]
    one = torchrun(1, tmp_path / "runs" / "one", *options)
    two = torchrun(2, tmp_path / "runs" / "two", *options)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["one", "two"]  # rank 1 wrote nothing
    # every rank draws the whole batch's negatives and keeps its half: the runs follow each other step for step
    losses = [[row["train/loss"] for row in json.loads((tmp_path / "runs" / n / "history.json").read_text())]
              for n in ("one", "two")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-2)
    assert losses[0][-1] < losses[0][0] * 0.9
    for key in ("test/recall@20", "test/ndcg@20", "val/recall@20"):
        assert two[key] == pytest.approx(one[key], abs=0.02), key


@pytest.mark.slow
@pytest.mark.parametrize("batching", ["full", "neighbor"])
def test_two_processes_train_the_graph_encoder_like_one(env, tmp_path, batching):
    """Each rank takes half of every batch's target links (its in-batch negatives are its half's) and half of the
    alignment products (with neighbour sampling, each rank samples its own subgraph around its half); the
    validation metric the epoch is chosen on stays within noise."""
    options = ["data.num_products=200", "data.num_users=30", "data.image_size=48", "train.max_epochs=8",
               "train.patience=100", "relevance.enabled=false", "eval.examples=[]", f"train.batching={batching}"]
    one = torchrun(1, tmp_path / "one", *options)
    two = torchrun(2, tmp_path / "two", *options)
    for key in ("val/recall@10", "graph_space/copurchase/recall@10"):
        assert two[key] == pytest.approx(one[key], abs=0.06), key
