"""Every ablation in conf/experiment/ sweeps seeds 0-2 over values that build a working model and index."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser

from gnn_mmsearch.config import validate
from gnn_mmsearch.index import create_index
from gnn_mmsearch.jobs.search import build_encoder

ABLATIONS = {"modalities": "model.modalities", "fusion": "model.fusion", "depth": "model.gnn.layers",
             "conv": "model.gnn.conv", "index": "index", "ranking": "ranking"}
CONF = Path(__file__).parents[1] / "conf"


def _sweep(experiment: str) -> dict[str, list[str]]:
    with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    return {o.key_or_group: [str(v) for v in o.sweep_string_iterator()]
            for o in OverridesParser.create().parse_overrides(params)}


GIFT_CARD_ROWS = {"text_only": (["text"], "attention"), "image_only": (["image"], "attention"),
                  "concat": (["image", "text"], "concat"), "attention": (["image", "text"], "attention")}


MMREC_ROWS = {f"mmrec_{model}_{data}": (model, data) for model in ("bpr", "lightgcn", "mmgraph", "xsimgcl", "layergcn",
                                                                          "freedom", "lgmrec")
              for data in ("baby", "sports")}
MMREC_GRIDS = {"mmrec_lightgcn_grid": {"recommender.layers": ["1", "2", "3", "4"],
                                       "recommender.reg_weight": ["1e-2", "1e-3", "1e-4", "1e-5", "1e-6"]},
               "mmrec_bpr_grid": {"recommender.reg_weight": ["2.0", "1.0", "1e-1", "1e-2", "1e-3", "1e-4", "1e-5"]}}


def test_every_experiment_config_is_listed():
    assert {p.stem for p in (CONF / "experiment").glob("*.yaml")} == {*ABLATIONS, "no_graph", "gift_cards",
                                                                       *MMREC_ROWS, *MMREC_GRIDS}


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
        cfg = validate(cfg)
        model = build_encoder(cfg, image_dim=12, text_dim=8)
        create_index(cfg.index.kind, dim=model.config.out_dim, **{k: v for k, v in cfg.index.items() if k != "kind"})


def test_gift_cards_sweeps_models_depths_and_seeds_on_the_gift_cards_data():
    assert _sweep("gift_cards") == {"model": list(GIFT_CARD_ROWS), "model.gnn.layers": ["0", "2"],
                                    "seed": ["0", "1", "2"]}
    for name, (modalities, fusion) in GIFT_CARD_ROWS.items():
        with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
            cfg = compose("config", overrides=["experiment=gift_cards", f"model={name}"])
        assert cfg.data.source == "amazon" and cfg.data.meta_path.endswith("amazon2018-gift-cards/meta_Gift_Cards.json")
        assert cfg.logger.group == "gift_cards" and 10 in cfg.eval.ks and 20 in cfg.eval.ks
        assert list(cfg.model.modalities) == modalities and cfg.model.fusion == fusion
        assert cfg.model.gnn.layers == 2  # the default depth is the sweep's "with graph" value
        build_encoder(validate(cfg), image_dim=12, text_dim=8)


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


@pytest.mark.parametrize("experiment", sorted(MMREC_ROWS))
def test_mmrec_rows_run_the_topn_job_with_mmrecs_protocol(experiment):
    model, data = MMREC_ROWS[experiment]
    with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
        cfg = compose("config", overrides=[f"experiment={experiment}"])
    assert cfg.task_name == "recommend" and validate(cfg).task_name == "recommend"
    assert cfg.data.source == "mmrec" and cfg.data.path.endswith(f"mmrec/{data}/{data}.inter")
    assert cfg.recommender.name == model and cfg.recommender.embedding_dim == 64
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.patience, cfg.train.monitor) == (1e-3, 2048, 20, "recall@20")
    assert list(cfg.eval.ks) == [5, 10, 20, 50]


@pytest.mark.parametrize("experiment", sorted(MMREC_GRIDS))
def test_mmrec_grids_sweep_mmrecs_hyperparameters(experiment):
    def as_floats(sweep):
        return {key: [float(v) for v in values] for key, values in sweep.items()}

    assert as_floats(_sweep(experiment)) == as_floats(MMREC_GRIDS[experiment])
    with initialize_config_module(version_base="1.3", config_module="gnn_mmsearch.conf"):
        cfg = compose("config", overrides=[f"experiment={experiment}", "data=mmrec_sports"])
    assert cfg.data.path.endswith("sports.inter") and cfg.task_name == "recommend"  # on either dataset
