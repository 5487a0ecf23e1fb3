"""The main job: catalog -> features -> graph encoder -> HNSW index -> evaluation -> run directory."""
from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .data import Catalog, SyntheticConfig, load_or_generate, split_edges, split_products
from .data.amazon import AmazonConfig
from .data.amazon import load_or_build as load_or_build_amazon
from .evaluation import (evaluate_copurchase, evaluate_queries, evaluate_title_to_image, served_metrics,
                         title_queries, top_k)
from .features import build_image_encoder, build_text_encoder, extract_features
from .index import create_index
from .models import EncoderConfig, MultimodalGraphEncoder
from .ranking.train import fit_ranking, load_pipeline, wants_ranking
from .recommend import run_topn
from .search import RUN_INFO, Searcher, format_hits, index_attributes
from .tracking import Tracker, start_run
from .training import TrainConfig, Trainer
from .utils import seed_everything, write_json

log = logging.getLogger(__name__)


def build_catalog(data_cfg: DictConfig, cache_dir: Path) -> Catalog:
    if data_cfg.source == "synthetic":
        keys = SyntheticConfig.__dataclass_fields__
        return load_or_generate(SyntheticConfig(**{k: v for k, v in data_cfg.items() if k in keys}),
                                cache_dir / "catalogs")
    if data_cfg.source == "directory":
        return Catalog.load(data_cfg.path)
    if data_cfg.source == "amazon":
        keys = AmazonConfig.__dataclass_fields__
        return load_or_build_amazon(AmazonConfig(**{k: v for k, v in data_cfg.items() if k in keys}),
                                    cache_dir / "catalogs")
    raise ValueError(f"unknown data.source {data_cfg.source!r} (synthetic | directory | amazon)")


def build_encoder(cfg: DictConfig, image_dim: int, text_dim: int) -> MultimodalGraphEncoder:
    m = cfg.model
    return MultimodalGraphEncoder(EncoderConfig(
        image_dim=image_dim, text_dim=text_dim, hidden_dim=m.hidden_dim, out_dim=m.out_dim,
        modalities=list(m.modalities), fusion=m.fusion, gnn_layers=m.gnn.layers, conv=m.gnn.conv,
        dropout=m.dropout, graph_edge_types=list(cfg.data.split.graph_edge_types),
        features=OmegaConf.to_container(cfg.encoder, resolve=True)))


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Run the whole pipeline and write the run directory, tracked by ``cfg.logger``; returns the flat metrics.
    MMRec interaction data (``data.source: mmrec``) runs the top-N recommendation job (``recommend.py``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    job = run_topn if cfg.data.source == "mmrec" else _run
    with start_run(cfg, run_dir) as tracker:
        metrics = job(cfg, run_dir, tracker)
        tracker.log_final(metrics)
    return metrics


def _run(cfg: DictConfig, run_dir: Path, tracker: Tracker) -> dict[str, float]:
    timings, t0 = {}, time.perf_counter()
    seed_everything(cfg.seed)
    cache_dir = Path(cfg.cache_dir).expanduser()

    catalog = build_catalog(cfg.data, cache_dir)
    log.info("%r", catalog)
    timings["catalog_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    image_enc, text_enc = build_image_encoder(cfg.encoder), build_text_encoder(cfg.encoder)
    feats = extract_features(catalog, image_enc, text_enc, cache_dir / "features")
    timings["features_s"] = time.perf_counter() - t

    s = cfg.data.split
    split = split_edges(catalog, s.target_edge_type, list(s.graph_edge_types), s.val_ratio, s.test_ratio, cfg.seed)
    holdout = split_products(len(catalog), s.query_holdout_ratio, cfg.seed)
    model = build_encoder(cfg, feats.image.size(1), feats.text.size(1))
    model.set_feature_extractors(image=image_enc, text=text_enc)

    t = time.perf_counter()
    trainer = Trainer(model, feats, split, holdout, TrainConfig(**cfg.train), seed=cfg.seed,
                      on_epoch_end=tracker.log_epoch)
    history = trainer.fit()
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ks = tuple(cfg.eval.ks)
    with torch.no_grad():
        emb_test = trainer.embed(split.message_passing("test"))
    metrics = {f"copurchase/{k}": v for k, v in evaluate_copurchase(emb_test, split, "test", ks).items()}
    metrics.update(best_validation(history, cfg.train.monitor))
    queries, targets = title_queries(catalog.products, holdout.nonzero().flatten().tolist(), cfg.seed)
    if queries:
        q_emb = model.encode_query(text=queries)
        metrics.update({f"text_query/{k}": v for k, v in evaluate_queries(q_emb, torch.tensor(targets), emb_test, ks).items()})
    crossmodal = evaluate_title_to_image(model, catalog.products, feats, split.message_passing("test"),
                                         holdout.nonzero().flatten().tolist(), tuple(cfg.eval.crossmodal_ks))
    metrics.update({f"crossmodal/{k}": v for k, v in crossmodal.items()})

    # serving embeddings propagate over every link; the index is what `gnn-mmsearch search` answers from
    with torch.no_grad():
        emb = model(feats.image, feats.image_mask, feats.text, feats.text_mask,
                    catalog.to_pyg(model.config.graph_edge_types).edge_index).numpy()
    index = create_index(cfg.index.kind, dim=emb.shape[1], **{k: v for k, v in cfg.index.items() if k != "kind"})
    index.add(emb, catalog.ids, index_attributes(catalog))
    metrics["index/recall@10"] = _index_recall(index, emb, catalog.ids)
    if queries:
        metrics.update(served_query_metrics(index, q_emb.numpy(), [catalog.ids[t] for t in targets], catalog,
                                            cfg.rerank, min(ks)))
    timings["eval_index_s"] = time.perf_counter() - t
    if wants_ranking(cfg.rerank):
        t = time.perf_counter()
        metrics.update(fit_ranking(cfg.rerank, model, index, catalog, feats, cfg.seed, run_dir, min(ks)))
        timings["ranking_s"] = time.perf_counter() - t

    model.save_pretrained(run_dir / "encoder")
    index.save(run_dir / "index")
    timings["total_s"] = time.perf_counter() - t0
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "history.json", history)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    write_json(run_dir / RUN_INFO, {
        "seed": cfg.seed, "data_fingerprint": catalog.fingerprint(), "catalog": catalog.name,
        "catalog_root": str(catalog.root.resolve()), "num_products": len(catalog), "num_edges": len(catalog.edges),
        "features": feats.stats, "epochs": len(history), "timings_s": timings,
        "rerank": OmegaConf.to_container(cfg.rerank), "versions": _versions()})

    print(format_metrics(metrics, ks))
    searcher = Searcher(model, index, catalog, cfg.rerank.mmr_lambda, cfg.rerank.candidates,
                        load_pipeline(cfg.rerank, catalog, run_dir))
    for q in cfg.eval.examples:
        print(f'\nsearch "{q}":\n{format_hits(searcher.search(text=q, k=5))}')
    print(f"\nfeatures: {feats.stats}\ntimings: " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
    print(f"run directory: {run_dir.resolve()}")
    return metrics


def best_validation(history: list[dict], monitor: str) -> dict[str, float]:
    """The validation metrics of the epoch the trainer kept (first best ``val/<monitor>``): what sweeps optimise."""
    best = max(history, key=lambda row: row[f"val/{monitor}"])
    return {k: v for k, v in best.items() if k.startswith("val/")}


def _index_recall(index, emb: np.ndarray, ids: list[str], num_queries: int = 500, k: int = 10) -> float:
    """Recall@k of the served index against exact search, on product-to-product queries."""
    rng = np.random.default_rng(0)
    rows = rng.choice(len(ids), size=min(num_queries, len(ids)), replace=False)
    exact = top_k(torch.from_numpy(emb[rows]), torch.from_numpy(emb), k).numpy()
    found = index.search(emb[rows], k).ids
    hits = sum(len({ids[j] for j in exact[r]} & set(found[r])) for r in range(len(rows)))
    return hits / (len(rows) * k)


def served_query_metrics(index, queries: np.ndarray, targets: list[str], catalog: Catalog, rerank: DictConfig,
                         k: int) -> dict[str, float]:
    """Diversity of the served index's top-``k`` lists for the text queries (``diversity/*``) and, when
    ``rerank.mmr_lambda`` is set, their relevance and diversity after MMR (``text_query_mmr/*``, ``diversity_mmr/*``).
    Coverage is distinct leaf categories in the top ``k`` divided by ``k`` (see ``evaluation/served.py``)."""
    lambdas = [None] if rerank.mmr_lambda is None else [None, rerank.mmr_lambda]
    categories = {p.id: p.category for p in catalog.products}
    plain, *reranked = served_metrics(index, queries, targets, categories, k, lambdas, rerank.candidates)
    out = {f"diversity/{m}@{k}": plain[f"{m}@{k}"] for m in ("ild", "coverage")}
    for res in reranked:
        out.update({f"text_query_mmr/{m}@{k}": res[f"{m}@{k}"] for m in ("recall", "ndcg")})
        out.update({f"diversity_mmr/{m}@{k}": res[f"{m}@{k}"] for m in ("ild", "coverage")})
    return out


def format_metrics(metrics: dict[str, float], ks) -> str:
    """A table: one row per task/metric, one column per K."""
    rows = {}
    for key, value in metrics.items():
        name, _, k = key.rpartition("@")
        rows.setdefault(name, {})[int(k)] = value
    ks = sorted({k for r in rows.values() for k in r})
    width = max(len(n) for n in rows) + 2
    lines = ["metric".ljust(width) + "".join(f"@{k:<8}" for k in ks)]
    for name, vals in rows.items():
        lines.append(name.ljust(width) + "".join(f"{vals[k]:<9.4f}" if k in vals else " " * 9 for k in ks))
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import hnswlib
    import timm
    import torch_geometric
    return {"python": platform.python_version(), "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
            "timm": timm.__version__, "hnswlib": getattr(hnswlib, "__version__", "?")}
