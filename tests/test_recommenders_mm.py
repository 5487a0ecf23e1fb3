"""The multimodal top-N recommenders (FREEDOM, LGMRec): their graphs, training, and the job with and without
item features."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import run_cli
from gnn_mmsearch.cli import main
from gnn_mmsearch.data.mmrec import load_inter
from gnn_mmsearch.evaluation.topn import evaluate_topn
from gnn_mmsearch.jobs.recommend import load_recommender
from gnn_mmsearch.layers import csr_tensor, knn_graph, spmm
from gnn_mmsearch.models import create_recommender
from gnn_mmsearch.training.topn import TopNTrainConfig, TopNTrainer
from test_mmrec import block_interactions, write_inter

MULTIMODAL = ["freedom", "lgmrec"]


def block_features(num_items: int, items_per_block: int = 10, dims=(16, 8), noise: float = 0.3, seed: int = 0):
    """Image / text features whose direction is the item's block (plus noise): the signal the models can use."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, dim in zip(("image", "text"), dims):
        centres = rng.normal(size=(num_items // items_per_block + 1, dim))
        out[name] = (centres[np.arange(num_items) // items_per_block]
                     + noise * rng.normal(size=(num_items, dim))).astype(np.float32)
    return out


def test_knn_graph_matches_brute_force_in_blocks_and_skips_missing_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 6)).astype(np.float32)
    x[[4, 20]] = 0  # missing features
    graph = knn_graph(torch.from_numpy(x), k=5, block=8)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    sim[:, [4, 20]] = -np.inf
    for i in range(37):
        got = set(graph[i].indices)
        if i in (4, 20):
            assert not got
        else:
            assert got == set(np.argsort(-sim[i])[:5]) and i in got
    assert graph.nnz == 35 * 5 and set(graph.data) == {1.0}
    assert graph[:, [4, 20]].nnz == 0


def test_spmm_with_a_given_transpose_matches_autograd():
    g = torch.Generator().manual_seed(0)
    dense = (torch.rand(7, 5, generator=g) < 0.4) * torch.rand(7, 5, generator=g)
    adj = csr_tensor(sp.csr_matrix(dense.numpy()))
    x = torch.randn(5, 3, generator=g, requires_grad=True)
    w = torch.randn(7, 3, generator=g)
    grad = torch.autograd.grad((spmm(adj, x, csr_tensor(sp.csr_matrix(dense.numpy().T))) * w).sum(), x)[0]
    torch.testing.assert_close(grad, dense.t() @ w)


def test_freedom_prunes_high_degree_edges_more_and_resamples_each_epoch(tmp_path):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    model = create_recommender("freedom", data.train, block_features(data.num_items), dropout=0.5)
    full = model.adjacency._nnz()
    rng = np.random.default_rng(0)
    edge_sets = []
    kept = np.zeros(data.train.nnz)
    for _ in range(200):
        model.resample(rng)
        assert model.pruned_adjacency._nnz() == full // 2  # half the edges, both directions
        rows = model.pruned_adjacency.crow_indices().diff().numpy()[: data.num_users]
        edge_sets.append(rows.tobytes())
        users, items = model.pruning.users, model.pruning.items
        dense = model.pruned_adjacency.to_dense()[users, items + data.num_users].numpy()
        kept += dense > 0
    assert len(set(edge_sets)) > 1
    rate = kept / 200
    weight = model.pruning.weight
    low, high = weight > np.median(weight), weight < np.median(weight)
    assert rate[low].mean() > rate[high].mean() + 0.02  # edges of high-degree pairs (small weight) dropped more
    model.train()
    pruned = model()[0]
    model.eval()
    whole = model()[0]  # evaluation uses the whole graph
    model.pruned_adjacency = model.adjacency
    model.train()
    assert torch.equal(model()[0], whole) and not torch.allclose(pruned, whole)


def test_trainer_calls_resample_once_per_epoch(tmp_path):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    model = create_recommender("freedom", data.train, block_features(data.num_items))
    calls = []
    model.resample = lambda rng: calls.append(rng)
    TopNTrainer(model, data, TopNTrainConfig(max_epochs=3, batch_size=256), ks=(4,)).fit()
    assert len(calls) == 3 and all(isinstance(r, np.random.Generator) for r in calls)


@pytest.mark.parametrize("name", MULTIMODAL)
def test_multimodal_recommenders_learn_block_structure(env, tmp_path, name):
    """With features that carry no signal, the ranking has to come from the interactions. (LGMRec ranks the
    blocks before training already: its modality embeddings are random projections smoothed over the graph.)"""
    torch.manual_seed(0)
    data = load_inter(write_inter(tmp_path, block_interactions()))
    rng = np.random.default_rng(1)
    noise = {"image": rng.normal(size=(30, 16)).astype(np.float32), "text": rng.normal(size=(30, 8)).astype(np.float32)}
    model = create_recommender(name, data.train, noise)
    trainer = TopNTrainer(model, data, TopNTrainConfig(max_epochs=30, lr=0.05, batch_size=128, patience=30), ks=(4,))
    before = trainer.evaluate("test")["recall@4"]
    history = trainer.fit()
    after = trainer.evaluate("test")["recall@4"]
    losses = [row["train/loss"] for row in history]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses
    assert after > 0.5 and after >= before, (name, before, after)  # chance is 4 of the 4 unseen block items / 24
    if name == "freedom":
        assert after > before + 0.2, (before, after)
    assert not any("features" in key for key in model.state_dict())  # the data, not the model, holds features


def test_freedom_item_graph_links_items_with_similar_features(tmp_path):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    model = create_recommender("freedom", data.train, block_features(data.num_items, noise=0.1), knn_k=5)
    graph = model.item_graph.to_dense()
    rows, cols = graph.nonzero().t()
    assert (rows // 10 == cols // 10).all()  # every neighbour, in either modality, is in the item's block
    torch.testing.assert_close(graph.sum(1), torch.ones(30))  # each modality's rows sum to 1; weights 0.1 + 0.9


@pytest.mark.parametrize("name", MULTIMODAL)
def test_one_modality_is_enough(tmp_path, name):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    model = create_recommender(name, data.train, {"text": block_features(data.num_items)["text"]})
    loss = model.loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([20, 21]))
    assert torch.isfinite(loss) and loss.requires_grad


@pytest.mark.parametrize("name", MULTIMODAL)
def test_missing_item_features_is_one_line_and_exit_2(env, tmp_path, capsys, name):
    path = write_inter(tmp_path, block_interactions())
    run_dir = tmp_path / "run"
    assert main(["run", f"hydra.run.dir={run_dir}", "task=recommend", f"data.path={path}", f"recommender={name}",
                 "logger=none"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == (f"gnn-mmsearch run: recommender {name} needs item features (image_feat.npy / "
                           "text_feat.npy beside the .inter file); none found")
    assert "Traceback" not in out + err and not run_dir.exists()
    with pytest.raises(ValueError, match=f"recommender {name} needs item features"):
        create_recommender(name, load_inter(path).train)


@pytest.mark.parametrize("override, message", [
    ("recommender.dropout=1.0", "recommender freedom: image_weight must be in [0, 1] and dropout in [0, 1), got 0.1, 1.0"),
    ("recommender.knn_k=0", "recommender freedom: knn_k must be >= 1 and mm_layers, ui_layers >= 0, got 0, 1, 2"),
])
def test_a_bad_option_is_one_line_and_exit_2(env, tmp_path, capsys, override, message):
    path = write_inter(tmp_path, block_interactions())
    np.save(tmp_path / "text_feat.npy", block_features(30)["text"])
    assert main(["run", f"hydra.run.dir={tmp_path / 'run'}", "task=recommend", f"data.path={path}",
                 "recommender=freedom", override, "logger=none"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == f"gnn-mmsearch run: recommender: {message}" and "Traceback" not in out + err  # caught at validation


def test_a_malformed_inter_file_is_one_line_and_exit_2(env, tmp_path, capsys):
    path = write_inter(tmp_path, "user\titem\n0\t1\n")
    assert main(["run", f"hydra.run.dir={tmp_path / 'run'}", "task=recommend", f"data.path={path}",
                 "logger=none"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().startswith(f"gnn-mmsearch run: {path}: header ['user', 'item'] lacks column(s)")
    assert "Traceback" not in out + err


def write_mmrec_shaped(root, users: int = 200, items: int = 300, per_user: int = 10, seed: int = 0):
    """A small .inter with MMRec Baby's feature shapes (4096-d image, 384-d text); a few rows left empty."""
    rng = np.random.default_rng(seed)
    rows = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(users):
        chosen = rng.choice(items, per_user, replace=False)
        rows += [f"{u}\t{i}\t5\t0\t{0 if j < 8 else 1 if j < 9 else 2}" for j, i in enumerate(chosen)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "shaped.inter").write_text("\n".join(rows) + "\n")
    for name, dim in (("image_feat.npy", 4096), ("text_feat.npy", 384)):
        feats = rng.random((items, dim), dtype=np.float32)
        feats[rng.choice(items, 5, replace=False)] = 0
        np.save(root / name, feats)
    return root / "shaped.inter"


@pytest.mark.parametrize("name", MULTIMODAL)
def test_run_with_mmrec_feature_shapes(env, tmp_path, name):
    path = write_mmrec_shaped(tmp_path / "data")
    run_dir = tmp_path / "run"
    out = run_cli(run_dir, "task=recommend", f"data.path={path}", f"recommender={name}", "train.max_epochs=2",
                  "train.batch_size=512", "logger=none")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["num_items"] == 300 and info["epochs"] == 2 and "test/recall" in out
    assert all(np.isfinite(v) for v in metrics.values())
    model, data = load_recommender(run_dir)  # the graphs are rebuilt from the features, the weights reloaded
    assert model.image_features.shape == (300, 4096) and model.text_features.shape == (300, 384)
    reloaded = evaluate_topn(model.scorer(), data.test, data.train, (5, 10, 20, 50))
    assert {f"test/{k}": v for k, v in reloaded.items()} == {k: v for k, v in metrics.items() if k.startswith("test/")}
