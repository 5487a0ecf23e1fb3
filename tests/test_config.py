"""Two jobs by name and structured configs: a wrong key, type or value fails at start with one line naming it,
before anything is loaded or written."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module

from gnn_mmsearch.cli import main
from gnn_mmsearch.config import ConfigError, validate


def _compose(*overrides: str):
    with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
        return compose("config", overrides=list(overrides))


def test_the_default_is_the_search_job_with_every_default_filled_in():
    cfg = validate(_compose())
    assert cfg.task_name == "search" and cfg.data.source == "synthetic" and cfg.split.val_ratio == 0.1
    assert cfg.model.fusion_kwargs == {} and cfg.ranking.ranker is None and "recommender" not in cfg


def test_task_recommend_composes_the_topn_groups():
    cfg = validate(_compose("task=recommend"))
    assert cfg.task_name == "recommend" and cfg.data.source == "mmrec" and cfg.recommender.name == "lightgcn"
    assert cfg.train.monitor == "recall@20" and list(cfg.eval.ks) == [5, 10, 20, 50]
    assert "model" not in cfg and "index" not in cfg and "ranking" not in cfg


@pytest.mark.parametrize("overrides, message", [
    (["data=mmrec_baby"], "add task=recommend"),
    (["task=recommend", "data=synthetic"], "is a product catalog for the search job"),
    (["train.lr=abc"], "train.lr: Value 'abc' of type 'str' could not be converted to Float"),
    (["+train.learning_rate=0.1"], "train.learning_rate: Key 'learning_rate' not in 'TrainConfig'"),
    (["model.gnn.layers=-1"], "model.gnn.layers must be >= 0, got -1"),
    (["train.max_epochs=0"], "train.max_epochs must be > 0, got 0"),
    (["data.num_products=0"], "data.num_products must be at least 1, got 0"),
    (["data.num_products=-5"], "data.num_products must be at least 1, got -5"),
    (["+data.products=10"], "data: catalog source 'synthetic' takes no option 'products'"),
    (["model.fusion=nope"], "model: unknown fusion 'nope'; choose one of attention, concat, weighted"),
    (["+model.fusion_kwargs.heads=2"], "model: fusion 'attention' takes no option 'heads'"),
    (["model.gnn.conv=nope"], "model.gnn: unknown convolution 'nope'"),
    (["index=hnsw", "+index.efs=3"], "index: index 'hnsw' takes no option 'efs'"),
    (["index=faiss", "index.nlist=0"], "index: nlist must be >= 1, got 0"),
    (["index=faiss", "index.m=12"], "index: m=12 (PQ sub-vectors) must be a positive divisor of model.out_dim=128"),
    (["index=faiss", "relevance.out_dim=100"], "index: m=16 (PQ sub-vectors) must be a positive divisor of "
                                               "relevance.out_dim=100"),
    (["index=faiss_flat", "index.method=lsh"], "index: unknown faiss method 'lsh'; choose from ivf_flat, ivf_pq"),
    (["index=hashing", "index.bits=200"], "index: ITQ codes are at most model.out_dim=128 bits"),
    (["ranking=lambdamart", "+ranking.ranker_kwargs.trees=5"], "ranking: ranker 'lambdamart' takes no option 'trees'"),
    (["ranking.mmr_lambda=2"], "ranking.mmr_lambda must be in [0, 1], got 2.0"),
    (["relevance.train.lr=0"], "relevance.train.lr must be > 0, got 0"),
    (["relevance.train.query_drops=[]"], "relevance.train.query_drops must be rates in [0, 1), got []"),
    (["relevance.depth=0"], "relevance.depth must be >= 1, got 0"),
    (["relevance.expansion.min_prob=0"], "relevance.expansion.min_prob must be in (0, 1], got 0.0"),
    (["relevance.expansion_weights=[]"], "relevance.expansion_weights must be a non-empty list of weights >= 0"),
    (["eval.baselines.bm25.name=nope"], "eval.baselines.bm25: unknown retriever 'nope'"),
    (["+eval.baselines.raw_text.k1=2"], "eval.baselines.raw_text: retriever 'raw' takes no option 'k1'"),
    (["train.monitor=loss"], "train.monitor must be recall|precision|ndcg|mrr@10|20"),
    (["eval.max_queries=0"], "eval.max_queries must be at least 1 (or null: every query), got 0"),
    (["train.batching=mini"], "train.batching must be full|neighbor, got 'mini'"),
    (["train.batching=neighbor", "train.num_neighbors=[10]"],
     "train.num_neighbors needs one fan-out per GNN layer (model.gnn.layers=2), got [10]"),
    (["task=recommend", "recommender=bpr", "+recommender.layers=3"], "recommender: recommender 'bpr' takes no option"),
    (["task=recommend", "recommender=xsimgcl", "recommender.eps=-0.1"], "recommender.eps must be >= 0, got -0.1"),
    (["task=recommend", "recommender=xsimgcl", "recommender.contrast_layer=3"],
     "recommender.contrast_layer must be in 1..layers (2), got 3"),
    (["task=recommend", "recommender=simgcl", "recommender.temperature=0"], "recommender.temperature must be > 0, got 0"),
    (["task=recommend", "recommender=simgcl", "recommender.cl_weight=-1"], "recommender.cl_weight must be >= 0, got -1"),
    (["task=recommend", "recommender=layergcn", "recommender.layers=0"], "recommender.layers must be >= 1, got 0"),
    (["task=recommend", "recommender=layergcn", "recommender.dropout=1"], "recommender.dropout must be in [0, 1), got 1"),
    (["task=recommend", "recommender=layergcn", "recommender.reg_weight=-1e-4"],
     "recommender.reg_weight must be >= 0, got -0.0001"),
    (["task=recommend", "train.eval_every=0"], "train.eval_every must be > 0, got 0"),
    (["task=recommend", "+train.temperature=0.1"], "train.temperature: Key 'temperature' not in 'TopNTrainConfig'"),
])
def test_bad_configs_fail_with_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(_compose(*overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_cli_answers_a_bad_config_with_one_line_and_writes_nothing(env, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", f"hydra.run.dir={run_dir}", "train.lr=abc", "logger=none"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("gnn-mmsearch run: train.lr: Value 'abc' of type 'str' could not be converted to Float")
    assert not (run_dir / "run.json").exists() and not (run_dir / "metrics.json").exists()
    assert main(["run", f"hydra.run.dir={run_dir}", "imports=[no_such_module_xyz]", "logger=none"]) == 2
    assert "imports: cannot import 'no_such_module_xyz'" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("model.gnn.layers=-1", "model.gnn.layers must be >= 0, got -1"),
    ("train.lr=abc", "train.lr: Value 'abc' of type 'str' could not be converted to Float"),
    ("data.num_products=-5", "data.num_products must be at least 1, got -5"),
    ("data.num_products=0", "data.num_products must be at least 1, got 0"),
    ("train.max_epochs=0", "train.max_epochs must be > 0, got 0"),
])
def test_a_bad_config_value_leaves_nothing_behind(env, tmp_path, capsys, override, message):
    """One line, exit 2, and neither the run directory Hydra made nor a half-built catalog (``*.tmp``) is left."""
    run_dir = tmp_path / "run"
    before = sorted(env.rglob("*"))
    assert main(["run", f"hydra.run.dir={run_dir}", override, "logger=none"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == f"gnn-mmsearch run: {message}" and "Traceback" not in out + err
    assert not run_dir.exists()
    assert sorted(env.rglob("*")) == before and not list(env.rglob("*.tmp"))


def test_a_bad_config_in_a_fresh_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gnn_mmsearch", "run", "data=mmrec_baby", "logger=none",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("gnn-mmsearch run: this data is user-item interactions")
