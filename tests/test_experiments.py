"""Every ablation in conf/experiment/ sweeps seeds 0-2 over values that build a working model and index."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser

from gnn_mmsearch.index import create_index
from gnn_mmsearch.pipeline import build_encoder

ABLATIONS = {"modalities": "model.modalities", "fusion": "model.fusion", "depth": "model.gnn.layers",
             "conv": "model.gnn.conv", "index": "index", "rerank": "rerank"}
CONF = Path(__file__).parents[1] / "conf"


def _sweep(experiment: str) -> dict[str, list[str]]:
    with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    return {o.key_or_group: [str(v) for v in o.sweep_string_iterator()]
            for o in OverridesParser.create().parse_overrides(params)}


def test_every_experiment_config_is_listed():
    assert {p.stem for p in (CONF / "experiment").glob("*.yaml")} == {*ABLATIONS, "no_graph"}


@pytest.mark.parametrize("experiment", sorted(ABLATIONS))
def test_ablation_sweeps_seeds_and_valid_values(experiment):
    sweep = _sweep(experiment)
    assert sweep["seed"] == ["0", "1", "2"]
    axis = ABLATIONS[experiment]
    assert set(sweep) == {axis, "seed"} and len(sweep[axis]) >= 2
    for value in sweep[axis]:
        with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
            cfg = compose("config", overrides=[f"experiment={experiment}", f"{axis}={value}"])
        assert cfg.logger.group == experiment
        model = build_encoder(cfg, image_dim=12, text_dim=8)
        create_index(cfg.index.kind, dim=model.config.out_dim, **{k: v for k, v in cfg.index.items() if k != "kind"})


def test_optuna_search_runs_two_trials(env, run_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from omegaconf import OmegaConf

    from gnn_mmsearch.cli import main

    data = [o for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml") if o.startswith("data.")]
    sweep = tmp_path / "optuna"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *data, "train.max_epochs=2",
                     "eval.examples=[]", "logger=none", f"hydra.sweep.dir={sweep}"]) == 0
    result = OmegaConf.load(sweep / "optimization_results.yaml")
    assert 0 < result.best_value <= 1 and set(result.best_params) >= {"train.lr", "model.fusion"}
    assert len(list(sweep.glob("*/metrics.json"))) == 2
