"""MMRec protocol: the .inter loader, full-ranking top-N metrics, negative sampling, the recommenders and the job."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.nn import LGConv

from conftest import run_cli
from gnn_mmsearch.cli import main
from gnn_mmsearch.data.mmrec import load_inter
from gnn_mmsearch.evaluation.topn import evaluate_topn, per_user_topn, rank_topn, topn_metrics
from gnn_mmsearch.layers.graph import SymmetricLGConv, normalized_adjacency
from gnn_mmsearch.losses import InfoNCELoss
from gnn_mmsearch.jobs.recommend import load_recommender
from gnn_mmsearch.models import RECOMMENDERS, create_recommender
from gnn_mmsearch.run_dir import RunDir
from gnn_mmsearch.search import Searcher
from gnn_mmsearch.training.topn import NegativeSampler, TopNTrainConfig, TopNTrainer

SHARED = next((p for p in (Path("/work/shared/data"), Path(__file__).resolve().parents[2] / "shared" / "data")
               if (p / "mmrec" / "baby" / "baby.inter").exists()), None)

INTER = """userID\titemID\trating\ttimestamp\tx_label
0\t0\t5\t1\t0
0\t1\t4\t2\t0
0\t2\t4\t3\t1
0\t3\t4\t4\t2
1\t1\t5\t1\t0
1\t2\t5\t2\t2
1\tx\t5\t2\t0
1\t3\t5
2\t4\t5\t3\t7
1\t1\t3\t9\t2
3\t0\t5\t1\t1
3\t4\t5\t1\t2
"""


def write_inter(tmp_path: Path, text: str = INTER) -> Path:
    path = tmp_path / "toy.inter"
    path.write_text(text)
    return path


def test_loader_counts_malformed_duplicate_and_cold_start_lines(tmp_path):
    data = load_inter(write_inter(tmp_path))
    r = data.report
    assert (r.lines, r.malformed, r.duplicates) == (12, 3, 1)  # "x" item, short line, x_label 7; (1, 1) twice
    assert (r.cold_start_users, r.cold_start_interactions) == (1, 2)  # user 3 has no training interaction
    assert (data.num_users, data.num_items) == (4, 5)
    assert data.train[0].indices.tolist() == [0, 1] and data.train[1].indices.tolist() == [1]
    assert data.valid.nnz == 1 and data.test[1].indices.tolist() == [2]  # the duplicate kept its first split
    assert data.valid[3].nnz == data.test[3].nnz == 0
    assert r.kept == {"train": 3, "valid": 1, "test": 2}
    assert load_inter(write_inter(tmp_path), filter_cold_start=False).valid[3].nnz == 1


def test_loader_rejects_a_wrong_header_and_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="lacks column"):
        load_inter(write_inter(tmp_path, "user\titem\tx_label\n0\t0\t0\n"))
    with pytest.raises(FileNotFoundError):
        load_inter(tmp_path / "absent.inter")
    with pytest.raises(ValueError, match="no valid interaction"):
        load_inter(write_inter(tmp_path, "userID\titemID\tx_label\nbad\tline\there\n"))


def test_item_features_are_loaded_checked_and_cleaned(tmp_path):
    path = write_inter(tmp_path)
    feats = np.arange(10, dtype=np.float32).reshape(5, 2)
    feats[3, 1] = np.nan
    np.save(tmp_path / "image_feat.npy", feats)
    data = load_inter(path)
    assert data.item_features["image"].shape == (5, 2) and not data.item_features["image"][3].any()
    assert data.report.nonfinite_feature_rows == {"image": 1}
    np.save(tmp_path / "text_feat.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected \[5, d\]"):
        load_inter(path)


def test_topn_metrics_match_hand_computed_values():
    # user 0: relevant {1, 3}, item 0 is a training item; user 1: relevant {4}; user 2 has nothing to evaluate
    relevant = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [1, 3, 4])), shape=(3, 5))
    exclude = sp.csr_matrix(([1], ([0], [0])), shape=(3, 5))
    scores = torch.tensor([[9.0, 5, 4, 3, 1], [5, 4, 3, 2, 1], [1, 1, 1, 1, 1]])
    m = evaluate_topn(lambda users: scores[users], relevant, exclude, ks=(1, 3))
    # user 0 ranks 1, 2, 3 (0 excluded): hits at 1 and 3; user 1 ranks 0, 1, 2: no hit
    assert m["recall@1"] == pytest.approx(0.5 * 0.5)
    assert m["recall@3"] == pytest.approx(0.5 * 1.0)
    assert m["precision@3"] == pytest.approx(0.5 * 2 / 3)
    ndcg = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@3"] == pytest.approx(0.5 * ndcg)
    assert m["map@3"] == pytest.approx(0.5 * (1 + 2 / 3) / 2)


def test_sampled_softmax_scores_each_positive_against_the_shared_negatives_only():
    g = torch.Generator().manual_seed(0)
    anchor, positive, negatives = (torch.randn(n, 4, generator=g) for n in (3, 3, 5))
    loss = InfoNCELoss(0.5, symmetric=False, in_batch=False)(anchor, positive, negatives)
    logits = torch.cat([(anchor * positive).sum(1, keepdim=True), anchor @ negatives.t()], 1) / 0.5
    assert loss == pytest.approx(float(-(logits.log_softmax(1)[:, 0]).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="shared negatives"):
        InfoNCELoss(0.5, symmetric=False, in_batch=False)(anchor, positive)
    with pytest.raises(ValueError, match="symmetric"):
        InfoNCELoss(0.5, symmetric=True, in_batch=False)


def test_negative_sampler_never_returns_a_training_item():
    train = sp.csr_matrix(np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 1]], np.float32))
    sampler = NegativeSampler(train, np.random.default_rng(0))
    users = np.array([0] * 500 + [1] * 500)
    neg = sampler(users)
    assert set(neg[:500]) == {3, 4} and set(neg[500:]) == {0, 1, 2, 3}


def test_symmetric_lgconv_matches_pyg_lgconv_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    edges = torch.randint(0, 30, (2, 80), generator=g)
    edges = torch.cat([edges, edges.flip(0)], 1)
    adj = normalized_adjacency(edges, 30)
    x = torch.randn(30, 8, generator=g, requires_grad=True)
    w = torch.randn(30, 8, generator=g)
    outs = []
    for conv, graph in ((SymmetricLGConv(), adj), (LGConv(), edges)):  # pre-normalised CSR vs PyG's own gcn_norm
        y = conv(conv(x, graph), graph)
        outs.append((y, torch.autograd.grad((y * w).sum(), x)[0]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-4, atol=1e-5)


def block_interactions(users_per_block: int = 20, items_per_block: int = 10, blocks: int = 3, seed: int = 0):
    """Users interact only with items of their block: train 6 items, valid 2, test 2 per user."""
    rng = np.random.default_rng(seed)
    rows = ["userID\titemID\tx_label"]
    for b in range(blocks):
        for u in range(b * users_per_block, (b + 1) * users_per_block):
            items = rng.permutation(items_per_block)[:10] + b * items_per_block
            rows += [f"{u}\t{i}\t{0 if j < 6 else 1 if j < 8 else 2}" for j, i in enumerate(items)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("name", ["bpr", "lightgcn", "mmgraph", "simgcl", "xsimgcl", "layergcn"])
def test_recommenders_learn_block_structure(env, tmp_path, name):
    torch.manual_seed(0)
    data = load_inter(write_inter(tmp_path, block_interactions()))
    options = {"bpr": {}, "simgcl": {"layers": 1, "cl_weight": 0.2}}.get(name, {"layers": 1})
    # (SimGCL's default weight 0.5 lets the contrastive term's uniformity dominate this 30-item graph)
    model = create_recommender(name, data.train, **options)
    trainer = TopNTrainer(model, data, TopNTrainConfig(max_epochs=30, lr=0.05, batch_size=128, patience=30), ks=(4,))
    before = trainer.evaluate("test")["recall@4"]
    history = trainer.fit()
    after = trainer.evaluate("test")["recall@4"]
    assert len(history) == 30 and all("val/recall@20" in row for row in history)
    losses = [row["train/loss"] for row in history]
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 0.9 * losses[0], (name, losses[0], losses[-5:])
    assert after > max(0.5, before + 0.2), (name, before, after)  # chance is 4 of the 4 unseen block items / 24


def test_simgcl_noise_is_a_length_eps_vector_in_each_embeddings_octant_and_scores_are_clean(tmp_path):
    torch.manual_seed(0)
    data = load_inter(write_inter(tmp_path, block_interactions()))
    model = create_recommender("simgcl", data.train, layers=2, eps=0.3)
    clean, noisy = model.layer_outputs(perturbed=False), model.layer_outputs(perturbed=True)
    noise = noisy[1] - clean[1]  # layer 1 sees the same input in both passes
    torch.testing.assert_close(noise.norm(dim=1), torch.full((noise.size(0),), 0.3))
    assert ((noise * clean[1]) >= 0).all() and not torch.equal(noisy[2], clean[2])
    users, items = model()
    torch.testing.assert_close(torch.cat([users, items]), (clean[1] + clean[2]) / 2)  # layer 0 left out
    model.train()
    first, second = model.scorer(), model.scorer()
    ids = torch.arange(data.num_users)
    assert torch.equal(first(ids), second(ids))  # no noise at scoring time, in either mode


def test_simgcl_and_xsimgcl_contrast_the_views_the_papers_define(tmp_path, monkeypatch):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    batch = torch.tensor([[0, 1, 1, 25], [0, 3, 3, 12], [5, 7, 9, 29]])
    for name, passes in (("simgcl", [False, True, True]), ("xsimgcl", [True])):
        torch.manual_seed(0)
        model = create_recommender(name, data.train, layers=3, cl_weight=1.0, reg_weight=0.0,
                                   **({"contrast_layer": 2} if name == "xsimgcl" else {}))
        calls = []
        original = model.layer_outputs
        monkeypatch.setattr(model, "layer_outputs", lambda perturbed: calls.append(perturbed) or original(perturbed))
        torch.manual_seed(1)
        loss = model.loss(*batch)
        assert calls == passes and torch.isfinite(loss)
        torch.manual_seed(1)
        views = [original(p) for p in passes]
        if name == "simgcl":
            ranked, view1, view2 = (model.readout(v) for v in views)
        else:
            ranked = view1 = model.readout(views[0])
            view2 = views[0][2]  # the output of layer l* = 2 of the same perturbed pass
        u, p, n = ranked[batch[0]], ranked[data.num_users + batch[1]], ranked[data.num_users + batch[2]]
        bpr = -torch.nn.functional.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        cl = 0
        for idx in (torch.tensor([0, 1, 25]), data.num_users + torch.tensor([0, 3, 12])):  # unique users, items
            a, b = (torch.nn.functional.normalize(v[idx], dim=1) for v in (view1, view2))
            temperature = 0.2 if name == "simgcl" else 0.15
            cl = cl + torch.nn.functional.cross_entropy(a @ b.t() / temperature, torch.arange(3))
        torch.testing.assert_close(loss, bpr + cl)


def test_layergcn_refines_each_layer_by_its_cosine_with_the_ego_embedding(tmp_path):
    torch.manual_seed(0)
    data = load_inter(write_inter(tmp_path, block_interactions()))
    model = create_recommender("layergcn", data.train, layers=2)
    adj = model.adjacency.to_dense()
    ego = torch.cat([model.user_emb, model.item_emb]).detach()
    x1 = adj @ ego
    x1 = x1 * torch.nn.functional.cosine_similarity(x1, ego, dim=1)[:, None]
    x2 = adj @ x1
    x2 = x2 * torch.nn.functional.cosine_similarity(x2, ego, dim=1)[:, None]
    users, items = model()
    torch.testing.assert_close(torch.cat([users, items]).detach(), x1 + x2)


def test_layergcn_prunes_the_training_graph_degree_sensitively_and_scores_on_the_full_graph(tmp_path):
    # user 0 interacts with all 40 items (a hub); users 1..40 each with one item
    rows = ["userID\titemID\tx_label"] + [f"0\t{i}\t0" for i in range(40)] + [f"{u}\t{u - 1}\t0" for u in range(1, 41)]
    data = load_inter(write_inter(tmp_path, "\n".join(rows) + "\n"))
    model = create_recommender("layergcn", data.train, layers=1, dropout=0.5)
    full = model.adjacency.to_dense()
    rng = np.random.default_rng(0)
    hub_kept = []
    for epoch in range(40):
        model.resample(rng)
        kept = model.train_adjacency.to_dense()[: data.num_users, data.num_users:] > 0
        assert int(kept.sum()) == 40  # half of the 80 edges, every epoch
        hub_kept.append(int(kept[0].sum()))
    # degree-sensitive epochs (even) keep an edge with probability ~ 1/sqrt(d_u d_i): the hub's 40 edges weigh
    # 1/sqrt(80) each against 1/sqrt(2) for the others, so few survive; uniform epochs (odd) keep about half
    assert np.mean(hub_kept[0::2]) < 10 and 15 < np.mean(hub_kept[1::2]) < 25, hub_kept
    assert torch.equal(model.adjacency.to_dense(), full)
    ids = torch.arange(data.num_users)
    model.train()
    scores = model.scorer()(ids)
    model.resample(rng)
    assert torch.equal(model.scorer()(ids), scores)  # scoring ignores the pruned graph
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([5, 6])
    on_pruned = model.loss(users, pos, neg)
    model.train_adjacency = None
    assert not torch.equal(model.loss(users, pos, neg), on_pruned)  # training uses the pruned graph
    unpruned = create_recommender("layergcn", data.train, layers=1, dropout=0.0)
    unpruned.resample(rng)
    assert unpruned.train_adjacency is None


def test_mmgraph_fuses_item_features_when_present(tmp_path):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    feats = {"image": np.random.default_rng(0).normal(size=(data.num_items, 5)).astype(np.float32)}
    model = create_recommender("mmgraph", data.train, feats, layers=1)
    assert model.modalities == ["image"] and model.item_inputs().shape == (data.num_items, 64)
    assert not any("features" in key for key in model.state_dict())  # the data, not the model, holds features
    assert {"bpr", "lightgcn", "mmgraph"} <= set(RECOMMENDERS.names())
    with pytest.raises(ValueError, match="unknown recommender"):
        create_recommender("nope", data.train)
    with pytest.raises(ValueError, match="recommender 'bpr' takes no option 'layers'"):
        create_recommender("bpr", data.train, layers=2)


@pytest.mark.parametrize("name", ["simgcl", "xsimgcl", "layergcn"])
def test_new_recommenders_run_end_to_end_and_reload_to_the_same_test_metrics(env, tmp_path, name):
    path = write_inter(tmp_path, block_interactions())
    run_dir = tmp_path / "run"
    run_cli(run_dir, "task=recommend", f"data.path={path}", f"recommender={name}", "recommender.layers=2",
            "train.max_epochs=3", "logger=none")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert RunDir(run_dir).config().recommender.name == name
    model, data = load_recommender(run_dir)
    reloaded = evaluate_topn(model.scorer(), data.test, data.train, (5, 10, 20, 50))
    assert {f"test/{k}": v for k, v in reloaded.items()} == {k: v for k, v in metrics.items() if k.startswith("test/")}


def test_a_bad_recommender_value_exits_2_with_one_line(env, tmp_path, capsys):
    path = write_inter(tmp_path, block_interactions())
    run_dir = tmp_path / "run"
    assert main(["run", f"hydra.run.dir={run_dir}", "task=recommend", f"data.path={path}", "recommender=layergcn",
                 "recommender.dropout=-0.5", "logger=none"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == "gnn-mmsearch run: recommender.dropout must be in [0, 1), got -0.5"
    assert "Traceback" not in out + err and not run_dir.exists()


def test_run_writes_the_mmrec_protocol_results(env, tmp_path):
    path = write_inter(tmp_path, block_interactions())
    run_dir = tmp_path / "run"
    out = run_cli(run_dir, "task=recommend", f"data.path={path}", "recommender=lightgcn", "train.max_epochs=3",
                  "logger=none")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {f"test/{m}@{k}" for m in ("recall", "ndcg", "precision", "map") for k in (5, 10, 20, 50)} <= set(metrics)
    assert "val/recall@20" in metrics and "test/recall" in out
    info = json.loads((run_dir / "run.json").read_text())
    assert info["task"] == "recommend"
    assert info["num_users"] == 60 and info["load_report"]["kept"]["test"] == 120 and len(info["data_fingerprint"]) == 16
    with pytest.raises(FileNotFoundError, match="is a top-N recommendation run, not a search run"):
        Searcher.from_run(run_dir)
    model, data = load_recommender(run_dir)
    reloaded = evaluate_topn(model.scorer(), data.test, data.train, (5, 10, 20, 50))
    assert {f"test/{k}": v for k, v in reloaded.items()} == {k: v for k, v in metrics.items() if k.startswith("test/")}
    per_user = np.load(run_dir / "test_per_user.npz")
    assert per_user["users"].size == per_user["recall@20"].size == 60
    assert per_user["recall@20"].mean() == pytest.approx(metrics["test/recall@20"], abs=1e-6)
    again = tmp_path / "again"
    run_cli(again, "task=recommend", f"data.path={path}", "recommender=lightgcn", "train.max_epochs=3", "logger=none")
    assert json.loads((again / "metrics.json").read_text()) == metrics  # same seed, same numbers
    path.write_text(path.read_text() + "59\t0\t0\n")
    with pytest.raises(ValueError, match="changed since"):
        load_recommender(run_dir)


@pytest.mark.shared_data
@pytest.mark.skipif(SHARED is None, reason="the shared data (/work/shared/data or ../shared/data) is not here")
@pytest.mark.parametrize("name,users,items,total", [("baby", 19445, 7050, 160792), ("sports", 35598, 18357, 296337)])
def test_shared_mmrec_files_load_with_the_published_counts(name, users, items, total):
    data = load_inter(SHARED / "mmrec" / name / f"{name}.inter")
    assert (data.num_users, data.num_items) == (users, items)
    assert sum(data.report.kept.values()) == total and data.report.malformed == 0


def test_per_user_topn_matches_the_mean_metrics():
    rng = np.random.default_rng(0)
    relevant = sp.random(40, 30, density=0.1, format="csr", random_state=1)
    relevant.data[:] = 1
    exclude = sp.random(40, 30, density=0.1, format="csr", random_state=2)
    scores = torch.from_numpy(rng.standard_normal((40, 30))).float()
    users, top = rank_topn(lambda ids: scores[ids], relevant, exclude, 10)
    mean, each = topn_metrics(users, top, relevant, (3, 10)), per_user_topn(users, top, relevant, (3, 10))
    assert each["recall@10"].shape == (users.size,) and users.size == np.diff(relevant.indptr).astype(bool).sum()
    for name in ("recall@3", "recall@10", "ndcg@3", "ndcg@10"):
        assert each[name].mean() == pytest.approx(mean[name], abs=1e-6)
    assert each["recall@10"].max() > 0


def test_mmgraph_item_bias_is_added_to_the_cosine_logits(tmp_path):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    model = create_recommender("mmgraph", data.train, layers=1, temperature=0.5, item_bias=True)
    with torch.no_grad():
        model.item_bias[3] = 4.0
    users, items = model()
    plain = create_recommender("mmgraph", data.train, layers=1, temperature=0.5)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "item_bias"})
    base_users, base_items = plain()
    scores = model.scorer()(torch.arange(3))
    expected = base_users[:3] @ base_items.t()
    expected[:, 3] += 0.5 * 4.0  # cos + t * b, i.e. logits cos / t + b scaled by t
    assert torch.allclose(scores, expected, atol=1e-5) and users.shape[1] == items.shape[1] == 65
    loss = model.loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    loss.backward()
    assert model.item_bias.grad[[0, 1, 2, 3]].abs().min() > 0  # positives and negatives both move the bias


def test_mmgraph_items_unseen_in_training_are_scored_from_their_features(tmp_path):
    data = load_inter(write_inter(tmp_path, block_interactions()))
    train = data.train.tolil()
    train[:, 5] = 0  # item 5 becomes cold: no training interaction
    train = train.tocsr()
    train.eliminate_zeros()
    feats = {"text": np.random.default_rng(0).normal(size=(data.num_items, 8)).astype(np.float32)}
    model = create_recommender("mmgraph", train, feats, layers=1, item_bias=True, id_dropout=0.5).eval()
    before = model.item_inputs()[5].clone()
    with torch.no_grad():
        model.item_emb[5] += 10.0  # an untrained ID embedding must not reach the cold item's vector
        model.item_bias[5] = -10.0  # nor its bias (it was only ever a negative)
    assert torch.allclose(model.item_inputs()[5], before)
    _, items = model()
    same = torch.from_numpy(feats["text"]).float()
    nearest = (torch.nn.functional.normalize(same, dim=1) @ torch.nn.functional.normalize(same[5], dim=0))
    nearest[5] = -2
    mix = model.cold_mix.to_dense()[0]
    assert model.cold.tolist() == [5] and set(mix.nonzero().squeeze(1).tolist()) == set(nearest.topk(10).indices.tolist())
    expected = torch.nn.functional.normalize(mix @ items[:, :-1], dim=0)  # its 10 nearest trained items' mean
    assert torch.allclose(items[5, :-1], expected, atol=1e-5)
    assert items[5, -1].item() == pytest.approx(0.2 * model.item_bias[model.warm].mean().item(), abs=1e-6)
    model.train()
    torch.manual_seed(0)
    dropped = model.item_inputs()
    assert not torch.allclose(dropped, model.eval().item_inputs())  # id_dropout only while training
    with pytest.raises(ValueError, match="id_dropout must be in"):
        create_recommender("mmgraph", train, feats, id_dropout=1.0)


def test_item_features_false_reads_no_feature_files(tmp_path):
    path = write_inter(tmp_path, block_interactions())
    np.save(tmp_path / "text_feat.npy", np.ones((30, 4), np.float32))
    assert set(load_inter(path).item_features) == {"text"}
    assert load_inter(path, item_features=False).item_features == {}
