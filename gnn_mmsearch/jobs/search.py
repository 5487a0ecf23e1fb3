"""The search job (``task=search``, the default): catalog -> features -> graph encoder -> index -> ranking stage ->
evaluation -> run directory."""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError
from .. import distributed
from ..data import load_catalog, split_edges, split_products
from ..device import resolve_device
from ..evaluation import evaluate_copurchase, evaluate_title_to_image, format_metrics, served_query_metrics, top_k
from ..evaluation.crossmodal import title_to_image
from ..evaluation.queries import title_query_bound
from ..evaluation.retrieval import sample_queries
from ..evaluation.query_sets import (QuerySet, evaluate_baselines, evaluate_model, evaluate_served, query_sets,
                                      side_by_side)
from ..features import build_image_encoder, build_text_encoder, extract_features
from ..index import VectorIndex, create_index
from ..models import EncoderConfig, MultimodalGraphEncoder, RelevanceConfig, RelevanceEncoder
from ..models.relevance import product_type
from ..ranking import build_pipeline
from ..ranking.modal import load_modal, product_modal, save_modal, split_query_features
from ..retrievers.bm25 import product_document
from ..retrievers.copurchase import choose_weights, selection_value
from ..retrievers.expansion import ImageWords
from ..retrievers.hybrid import HybridRetrieval
from ..run_dir import RunDir
from ..search import (Searcher, copurchase_retrieval, format_hits, hybrid_retrieval, index_attributes,
                      save_expansions)
from ..tracking import Tracker
from ..training import TrainConfig, Trainer
from ..training.ranker import fit_ranking
from ..training.relevance import (NoPseudoQueries, RelevanceTrainConfig, choose_fusion_weights, train_relevance,
                                 validation_objective, validation_split)
from ..utils import seed_everything

log = logging.getLogger(__name__)


def build_encoder(cfg: DictConfig, image_dim: int, text_dim: int) -> MultimodalGraphEncoder:
    m = cfg.model
    return MultimodalGraphEncoder(EncoderConfig(
        image_dim=image_dim, text_dim=text_dim, hidden_dim=m.hidden_dim, out_dim=m.out_dim,
        modalities=list(m.modalities), fusion=m.fusion, fusion_kwargs=dict(m.fusion_kwargs), gnn_layers=m.gnn.layers,
        conv=m.gnn.conv, conv_kwargs=dict(m.gnn.conv_kwargs), dropout=m.dropout,
        graph_edge_types=list(cfg.split.graph_edge_types), features=OmegaConf.to_container(cfg.encoder, resolve=True)))


def run(cfg: DictConfig, run: RunDir, tracker: Tracker) -> dict[str, float]:
    """Run the search job on a validated config; writes ``run`` and returns the flat metrics."""
    timings, t0 = {}, time.perf_counter()
    seed_everything(cfg.seed)
    cache_dir = Path(cfg.cache_dir).expanduser()

    with distributed.main_first():  # under torchrun rank 0 fills the caches, the other ranks read them
        try:
            catalog = load_catalog(cfg.data, cache_dir / "catalogs")
        except ValueError as err:  # the data itself: no product read, a k-core that leaves nothing, a bad catalog file
            raise ConfigError(f"data: {err}") from None
        log.info("%r", catalog)
        timings["catalog_s"] = time.perf_counter() - t0

        s = cfg.split
        split = split_edges(catalog, s.target_edge_type, list(s.graph_edge_types), s.val_ratio, s.test_ratio,
                            cfg.seed)
        sizes = {"training": split.train.size(1), "validation": split.val.size(1), "test": split.test.size(1)}
        if min(sizes.values()) < 1:
            raise ConfigError(f"data: catalog {catalog.name!r} is too small to split: its {sum(sizes.values())} "
                              f"{s.target_edge_type} link(s) give "
                              + ", ".join(f"{n} {part}" for part, n in sizes.items()) + " (at least 1 of each is needed)")

        t = time.perf_counter()
        image_enc, text_enc = build_image_encoder(cfg.encoder), build_text_encoder(cfg.encoder)
        feats = extract_features(catalog, image_enc, text_enc, cache_dir / "features")
        timings["features_s"] = time.perf_counter() - t

    linked = torch.zeros(len(catalog), dtype=torch.bool)
    linked[split.graph.flatten()] = True
    blank = int((~(feats.image_mask | feats.text_mask | linked)).sum())
    if blank:  # the Amazon loader drops such products; other sources may carry them
        log.warning("%d products have no text, image or link: they all get one vector in the graph space", blank)
    holdout = split_products(len(catalog), s.query_holdout_ratio, cfg.seed)
    model = build_encoder(cfg, feats.image.size(1), feats.text.size(1)).to(resolve_device(cfg.device))
    model.set_feature_extractors(image=image_enc, text=text_enc)

    t = time.perf_counter()
    trainer = Trainer(model, feats, split, holdout, TrainConfig(**cfg.train), seed=cfg.seed,
                      on_epoch_end=tracker.log_epoch, max_val_queries=cfg.eval.max_queries)
    history = trainer.fit()
    timings["train_s"] = time.perf_counter() - t
    if not distributed.is_main():
        return {}

    t = time.perf_counter()
    ks, cap = tuple(cfg.eval.ks), cfg.eval.max_queries
    with torch.no_grad():  # graph embeddings on the training device; serving embeddings propagate over every link
        emb_val, emb_test, emb = (trainer.embed(graph).cpu() for graph in (
            split.message_passing("val"), split.message_passing("test"),
            catalog.to_pyg(model.config.graph_edge_types).edge_index))
    model.cpu()  # queries are embedded on the CPU from here on, as `gnn-mmsearch search` serves them
    metrics = best_validation(history, cfg.train.monitor)
    metric = cfg.train.monitor.partition("@")[0]  # the weights are chosen on its mean at 10 and 20
    weights, copurchase_val = choose_weights(
        lambda scores: evaluate_copurchase(scores, split, "val", (10, 20), cap, cfg.seed), emb_val,
        cfg.copurchase.adjacency_weights, cfg.copurchase.popularity_weights, metric)
    metrics.update({f"val/copurchase_served/{k}": v for k, v in copurchase_val.items()})
    log.info("product queries: common-neighbour weight %g, popularity weight %g (validation %s@10 %.4f, @20 %.4f)",
             weights.adjacency, weights.popularity, metric, copurchase_val[f"{metric}@10"],
             copurchase_val[f"{metric}@20"])
    metrics.update({f"copurchase/{k}": v for k, v in evaluate_copurchase(weights.scores(emb_test), split, "test",
                                                                          ks, cap, cfg.seed).items()})
    metrics.update({f"graph_space/copurchase/{k}": v
                    for k, v in evaluate_copurchase(emb_test, split, "test", ks, cap, cfg.seed).items()})
    held_out = sample_queries(holdout.nonzero().flatten(), cap, cfg.seed)
    with tempfile.TemporaryDirectory(prefix="gnn-mmsearch-queries-") as work_dir:
        sets = query_sets(catalog, model, held_out, cfg.seed, Path(work_dir))
    metrics.update({f"graph_space/{k}": v for k, v in evaluate_model(model.embed_queries, sets, emb_test, ks).items()})
    metrics.update(evaluate_baselines(cfg.eval.baselines, catalog, feats, sets, split, ks, cap, cfg.seed))
    text = next((qs for qs in sets if qs.name == "text_query"), None)
    if text is not None:  # what no ranker beats in expectation on these queries
        metrics.update({f"bound/text_query/{k}": v for k, v in
                        title_query_bound(catalog.products, text.queries.texts, text.targets, ks).items()})
    head, head_history, validation_sets, started = None, [], [], time.perf_counter()
    if cfg.relevance.enabled:
        head, head_history, validation_sets = fit_relevance_head(cfg, catalog, feats, model, holdout)
        timings["relevance_s"] = time.perf_counter() - started
    expansions = image_expansions(cfg, catalog, feats, holdout) if head is not None else None
    if head is not None:
        with torch.no_grad():
            image_only = head(feats.image, feats.image_mask, feats.text, torch.zeros_like(feats.text_mask))
        crossmodal = title_to_image(
            lambda titles: head.embed_query_features(text=model.query_features(text=titles)["text"]), image_only,
            catalog.products, feats, held_out, tuple(cfg.eval.crossmodal_ks))
    else:
        crossmodal = evaluate_title_to_image(model, catalog.products, feats, split.message_passing("test"), held_out,
                                             tuple(cfg.eval.crossmodal_ks))
    metrics.update({f"crossmodal/{k}": v for k, v in crossmodal.items()})

    # the index is what `gnn-mmsearch search` answers from
    emb = emb.numpy()
    index = build_index(cfg.index, emb, catalog, range(len(catalog)))
    metrics["index/recall@10"] = _index_recall(index, emb, catalog.ids)
    ranking_stage = bool(cfg.ranking.ranker or cfg.ranking.personalize)
    if head is not None or ranking_stage:  # the products' raw features, read by the fusion and the ranker
        save_modal(product_modal(feats), run / run.RANKING_FEATURES)
    searcher = Searcher(model, index, catalog, build_pipeline(cfg.ranking, catalog, model.config.graph_edge_types),
                        relevance_retrieval(cfg, head, catalog, feats, run, expansions,
                                            lambda ws: model.query_features(text=ws)["text"]) if head is not None else None,
                        copurchase_retrieval(index, catalog, model.config.graph_edge_types, weights,
                                             cfg.copurchase.depth))
    fusion = {}
    if searcher.hybrid is not None:
        titles = [qs for qs in validation_sets if qs.name == "text_query"]
        baseline = evaluate_baselines(cfg.eval.baselines, catalog, feats, titles, None, (10,))
        floor = max((v for k, v in baseline.items() if k.endswith("/text_query/recall@10")), default=None)
        grids = {"bm25": cfg.relevance.bm25_weights, "title": cfg.relevance.title_weights,
                 "expansion": cfg.relevance.expansion_weights,
                 "category": cfg.relevance.category_weights, "match": cfg.relevance.match_weights,
                 "image": cfg.relevance.image_weights}
        if expansions is None:
            del grids["expansion"]
        fusion, validation = choose_fusion_weights(searcher, validation_sets, grids,
                                                   floor - cfg.relevance.title_tolerance if floor is not None else None)
        log.info("fusion weights chosen on validation queries: %s", fusion)
        metrics.update({f"val/{k}": v for k, v in validation.items()})
        metrics["val/search"] = validation_objective(validation)
    # what sweeps optimise (validation only): served co-purchase and, with a relevance head, search, equally weighted
    monitored = selection_value(copurchase_val, metric)
    metrics["val/objective"] = (monitored + metrics.get("val/search", monitored)) / 2
    timings["eval_index_s"] = time.perf_counter() - t
    if ranking_stage:
        t = time.perf_counter()
        metrics.update(fit_ranking(cfg.ranking, searcher, cfg.seed, run / run.RANKER,
                                   run / run.RANKING_FEATURES, min(ks)))
        timings["ranking_s"] = time.perf_counter() - t
    metrics.update(evaluate_served(searcher, sets, ks))
    if text is not None:
        vectors = model.embed_queries(text.queries.features).detach().numpy()
        served = [searcher.pipeline.query(v, index.vectors, modal=m)
                  for v, m in zip(vectors, split_query_features(text.queries.features, searcher.pipeline.table.modal))]
        metrics.update(served_query_metrics(searcher, vectors, served, [catalog.ids[i] for i in text.targets], min(ks),
                                            text.queries.features, text.queries.texts))

    model.save_pretrained(run / run.ENCODER)
    index.save(run / run.INDEX)
    if searcher.hybrid is not None:
        searcher.hybrid.head.save_pretrained(run / run.RELEVANCE)
        searcher.hybrid.index.save(run / run.RELEVANCE_INDEX)
        if expansions is not None:
            save_expansions(run / run.EXPANSION, catalog, expansions, OmegaConf.to_container(cfg.relevance.expansion))
        if searcher.hybrid.terms is not None and fusion.get("match"):
            searcher.hybrid.terms.save(run / run.TERM_VECTORS)
    timings["total_s"] = time.perf_counter() - t0
    run.write_results("search", cfg, metrics, history, {"relevance_history": head_history,
        "copurchase_weights": dataclasses.asdict(weights), "fusion_weights": fusion,
        "data_fingerprint": catalog.fingerprint(), "catalog": catalog.name,
        "catalog_root": str(catalog.root.resolve()), "num_products": len(catalog), "num_edges": len(catalog.edges),
        "features": feats.stats, "epochs": len(history), "timings_s": timings,
        "epoch_timings": trainer.epoch_timings})

    print(format_metrics({k: v for k, v in metrics.items()
                          if not k.startswith(("baseline/", "graph_space/", "bound/"))}))  # those: side by side
    print(f"\nside by side (baselines: eval.baselines):\n{side_by_side(metrics)}")
    examples = cfg.eval.examples if cfg.eval.examples is not None else text.queries.texts[:3] if text else []
    for q in examples:
        print(f'\nsearch "{q}":\n{format_hits(searcher.search(text=q, k=5))}')
    print(f"\nfeatures: {feats.stats}\ntimings: " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
    print(f"run directory: {run.path.resolve()}")
    return metrics


def fit_relevance_head(cfg: DictConfig, catalog, feats, encoder: MultimodalGraphEncoder, holdout: torch.Tensor
                       ) -> tuple[RelevanceEncoder | None, list[dict], list[QuerySet]]:
    """Train the relevance head on pseudo queries of products outside the test holdout and its validation split;
    returns it, its history and the validation query sets (``(None, [], [])`` with a warning when the catalog gives
    it nothing to learn from: text and image queries then search the graph space)."""
    r = cfg.relevance
    types = sorted({product_type(p) for p in catalog.products if p.category}) if max(r.category_weights) else []
    head = RelevanceEncoder(RelevanceConfig(feats.image.size(1), feats.text.size(1), r.hidden_dim, r.out_dim, r.dropout,
                                            types))
    train_cfg = RelevanceTrainConfig(**r.train)
    validation, train_products = validation_split(holdout, train_cfg.validation_ratio, cfg.seed)
    rows = sample_queries(validation.nonzero().flatten(), cfg.eval.max_queries, cfg.seed + 100)
    with tempfile.TemporaryDirectory(prefix="gnn-mmsearch-validation-") as work_dir:
        sets = query_sets(catalog, encoder, rows, cfg.seed + 100, Path(work_dir))
    try:
        history = train_relevance(head, catalog, feats, encoder, sets, train_products, train_cfg, cfg.seed)
    except NoPseudoQueries as err:
        log.warning("relevance head skipped: %s; text and image queries search the graph space", err)
        return None, [], []
    return head, history, sets


def image_expansions(cfg: DictConfig, catalog, feats, holdout: torch.Tensor) -> list[list[str]] | None:
    """Each product's image-predicted words its text lacks (``retrievers/expansion.py``), the predictor fitted on
    the relevance head's training products only (neither the test holdout nor the validation products); ``None``
    when ``relevance.expansion`` is off."""
    e = cfg.relevance.expansion
    if not e.enabled:
        return None
    _, train = validation_split(holdout, cfg.relevance.train.validation_ratio, cfg.seed)
    words = ImageWords.fit([product_document(p) for p in catalog.products], feats.image, feats.image_mask,
                           train.nonzero().flatten().tolist(), e.min_count, e.l2)
    expansions = words.expansions(e.top_k, e.min_prob)
    log.info("expansion: %d image words added to %d products' BM25 documents (vocabulary %d)",
             sum(map(len, expansions)), sum(map(bool, expansions)), len(words.vocab))
    return expansions


def build_index(index_cfg: DictConfig, emb: np.ndarray, catalog, rows) -> VectorIndex:
    """An index as ``index_cfg`` describes it, holding the products at ``rows`` with their filter attributes."""
    options = dict(index_cfg)
    index = create_index(options.pop("kind"), dim=emb.shape[1], **options)
    attributes = index_attributes(catalog)
    rows = list(rows)
    index.add(emb[rows], [catalog.ids[i] for i in rows], [attributes[i] for i in rows])
    return index


def relevance_retrieval(cfg: DictConfig, head: RelevanceEncoder, catalog, feats, run: RunDir,
                        expansions: list[list[str]] | None = None,
                        text_features: Callable[[list[str]], torch.Tensor] | None = None) -> HybridRetrieval:
    """The head's index (same index config as the graph's) over every product with a text or an image (one with
    neither has nothing a text or image query could match; product queries reach it through the graph), fused with
    the products' raw features saved in ``run.RANKING_FEATURES`` and BM25 (over ``expansions`` too, when given)."""
    with torch.no_grad():
        emb = head(feats.image, feats.image_mask, feats.text, feats.text_mask).numpy()
    index = build_index(cfg.index, emb, catalog, (feats.image_mask | feats.text_mask).nonzero().flatten().tolist())
    modal = load_modal(run / run.RANKING_FEATURES, len(catalog))
    r = cfg.relevance
    return hybrid_retrieval(r, head, index, catalog, modal.get("image"), {
        "bm25": max(r.bm25_weights), "image": max(r.image_weights), "category": max(r.category_weights),
        "title": max(r.title_weights),
        "expansion": max(r.expansion_weights), "match": max(r.match_weights)}, expansions,
        text_features)


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
