"""One way to extend: a fusion, a convolution, an index, a ranker, a catalog source and a recommender, each one class
plus one YAML living outside the package, selected from the command line (``imports=[module]`` and
``hydra.searchpath``) with no edit inside ``gnn_mmsearch/``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SMALL_RUN, run_cli
from gnn_mmsearch.index import load_index
from gnn_mmsearch.jobs.recommend import load_recommender
from gnn_mmsearch.search import Searcher

EXTENSION = '''
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from gnn_mmsearch.data import CATALOG_SOURCES, Catalog, CatalogSource, Edge, Product
from gnn_mmsearch.index import INDEXES
from gnn_mmsearch.index.exact import ExactIndex
from gnn_mmsearch.layers import CONVS, FUSIONS
from gnn_mmsearch.models import RECOMMENDERS
from gnn_mmsearch.models.bpr import BPRMF
from gnn_mmsearch.ranking import FEATURES, RANKERS


@FUSIONS.register("ext_mean")
class MeanFusion(nn.Module):
    """The mean of the present modality tokens, scaled."""

    def __init__(self, num_modalities, hidden_dim, scale=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.last_weights = None

    def forward(self, tokens, mask):
        weights = mask.float() / mask.float().sum(1, keepdim=True).clamp(min=1)
        self.last_weights = weights.detach()
        return self.scale * (weights.unsqueeze(-1) * tokens).sum(1)


@CONVS.register("ext_mean_conv")
class MeanConv(MessagePassing):
    """Mean of the neighbours, then a linear layer."""

    def __init__(self, dim, bias=True):
        super().__init__(aggr="mean")
        self.lin = nn.Linear(dim, dim, bias=bias)

    def forward(self, x, edge_index):
        return self.lin(self.propagate(edge_index, x=x))


@INDEXES.register("ext_exact")
class ExternalExactIndex(ExactIndex):
    pass


@RANKERS.register("ext_popularity")
class PopularityRanker:
    def __init__(self, weight=1.0):
        self.weight = weight

    def score(self, x):
        return self.weight * x[:, FEATURES.index("popularity")]


@CATALOG_SOURCES.register("ext_tiny")
@dataclass
class TinyCatalog(CatalogSource):
    num_products: int = 40

    def cache_key(self):
        return f"ext-tiny-{self.num_products}"

    def build(self, root):
        products = [Product(f"T{i}", title=f"{('red', 'blue')[i % 2]} item {i // 4}", category=["Tiny", f"g{i % 4}"],
                            price=1.0 + i) for i in range(self.num_products)]
        edges = [Edge(f"T{i}", f"T{j}") for i in range(self.num_products) for j in range(i + 1, self.num_products)
                 if i // 4 == j // 4]
        Catalog(products, edges, name="ext-tiny").save(root)


@RECOMMENDERS.register("ext_bpr")
class ScaledBPR(BPRMF):
    def __init__(self, train, item_features=None, embedding_dim=16, reg_weight=1e-4, init_scale=0.5):
        super().__init__(train, item_features, embedding_dim, reg_weight)
        with torch.no_grad():
            self.user_emb.mul_(init_scale)
            self.item_emb.mul_(init_scale)
'''

YAMLS = {
    "index/ext_exact.yaml": "kind: ext_exact\n",
    "ranking/ext_popularity.yaml": "defaults:\n  - none\n  - _self_\ncandidates: 50\nranker: ext_popularity\n"
                                   "ranker_kwargs: {weight: 2.0}\n",
    "data/ext_tiny.yaml": "source: ext_tiny\nnum_products: 40\n",
    "recommender/ext_bpr.yaml": "name: ext_bpr\nembedding_dim: 16\ninit_scale: 0.5\n",
}


@pytest.fixture(scope="module")
def extension(tmp_path_factory) -> list[str]:
    """The extension module on ``sys.path`` and its configs on Hydra's search path: the overrides that use them."""
    root = tmp_path_factory.mktemp("extension")
    (root / "my_components.py").write_text(EXTENSION)
    for name, text in YAMLS.items():
        (root / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "conf" / name).write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        yield ["imports=[my_components]", f"hydra.searchpath=[file://{root / 'conf'}]", "logger=none",
               "eval.examples=[]"]


def _search_run(run_dir, tmp_path: Path, extension, *overrides: str) -> Path:
    out = tmp_path / "run"
    run_cli(out, *extension, *SMALL_RUN, "train.max_epochs=2", *overrides)
    return out


def _json(path: Path):
    return json.loads(path.read_text())


def test_fusion_from_outside(env, run_dir, tmp_path, extension):
    out = _search_run(run_dir, tmp_path, extension, "model.fusion=ext_mean", "+model.fusion_kwargs.scale=2.0")
    assert _json(out / "encoder" / "config.json")["fusion"] == "ext_mean"
    assert Searcher.from_run(out).encoder.fusion.scale.item() != 0  # the external module, reloaded with the run


def test_convolution_from_outside(env, run_dir, tmp_path, extension):
    out = _search_run(run_dir, tmp_path, extension, "model.gnn.conv=ext_mean_conv", "+model.gnn.conv_kwargs.bias=false")
    encoder = Searcher.from_run(out).encoder
    assert type(encoder.gnn.convs[0]).__name__ == "MeanConv" and encoder.gnn.convs[0].lin.bias is None
    assert type(encoder.gnn.post[0]).__name__ == "Sequential"  # it has weights: LayerNorm, ReLU, dropout follow


def test_index_from_outside(env, run_dir, tmp_path, extension):
    out = _search_run(run_dir, tmp_path, extension, "index=ext_exact")
    assert load_index(out / "index").kind == "ext_exact"
    assert _json(out / "metrics.json")["index/recall@10"] == 1.0  # exact search


def test_ranker_from_outside(env, run_dir, tmp_path, extension):
    out = _search_run(run_dir, tmp_path, extension, "ranking=ext_popularity")
    assert {"user_query/ndcg@10", "user_query_ranked/ndcg@10"} <= set(_json(out / "metrics.json"))
    searcher = Searcher.from_run(out)
    assert type(searcher.pipeline.scorer).__name__ == "PopularityRanker" and searcher.pipeline.scorer.weight == 2.0
    hits = searcher.search(text="wireless mouse", k=5)
    assert [h.stages["score"] for h in hits] == sorted((h.stages["score"] for h in hits), reverse=True)


def test_catalog_source_from_outside(env, tmp_path, extension):
    out = tmp_path / "run"
    run_cli(out, *extension, "data=ext_tiny", "train.max_epochs=2")
    info = _json(out / "run.json")
    assert info["catalog"] == "ext-tiny" and info["num_products"] == 40
    assert Path(info["catalog_root"]).name == "ext-tiny-40"  # built once into the shared catalog cache


def test_recommender_from_outside(env, tmp_path, extension):
    inter = tmp_path / "tiny.inter"
    rows = ["userID\titemID\tx_label"] + [f"{u}\t{(u * 3 + j) % 20}\t{0 if j < 4 else 1 if j == 4 else 2}"
                                           for u in range(30) for j in range(6)]
    inter.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    run_cli(out, *extension[:3], "task=recommend", f"data.path={inter}", "recommender=ext_bpr", "train.max_epochs=2")
    assert "test/recall@20" in _json(out / "metrics.json")
    model, _ = load_recommender(out)
    assert type(model).__name__ == "ScaledBPR" and model.user_emb.shape[1] == 16


def test_serving_imports_no_training_module():
    """The serving path (Searcher and what it loads) never imports a training or job module."""
    import subprocess
    import sys

    code = ("import sys, gnn_mmsearch.search, gnn_mmsearch.explain; "
            "print([m for m in sys.modules if m.startswith(('gnn_mmsearch.training', 'gnn_mmsearch.jobs'))])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
