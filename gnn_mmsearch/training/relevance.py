"""Training the relevance head (``RelevanceEncoder``) that serves text and image queries.

Losses, each an InfoNCE with in-batch negatives at ``temperature``:

* query -> product: pseudo queries (titles of training products with words dropped, ``title_query``) must find their
  product's embedding and, with weight ``image_weight``, its image alone, so text queries reach products that have
  no text;
* text <-> image (``crossmodal_weight``): a training product's text tower and image tower must find each other.

False negatives are masked, not pushed away: batch products whose text holds every word of the query, and products
whose raw image is a near copy of the positive's (cosine above ``duplicate_image``). Shoppers' queries name
attributes many products share, so in-batch "negatives" often match too. Pseudo queries come from training
products only (neither the test query holdout nor the validation products); early stopping keeps the epoch with the
best mean validation search metric (title recall@10, attribute NDCG@10, image recall@10 where there are such
queries).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.catalog import Catalog
from ..evaluation.queries import title_query
from ..evaluation.query_sets import QuerySet, evaluate_model, evaluate_served
from ..features import ProductFeatures
from ..models.relevance import RelevanceEncoder, product_type
from ..retrievers.bm25 import product_document
from ._checks import check_positive
from ._early_stopping import EarlyStopping

log = logging.getLogger(__name__)
VALIDATION_METRICS = ("text_query/recall@10", "attribute_query/ndcg@10", "image_query/recall@10")


class NoPseudoQueries(ValueError):
    """The catalog has no titled training product to make pseudo queries from."""


@dataclass
class RelevanceTrainConfig:
    max_epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    temperature: float = 0.05
    image_weight: float = 0.5
    crossmodal_weight: float = 1.0
    patience: int = 4
    duplicate_image: float = 0.8  # raw-image cosine above which two products are no negatives of each other
    query_drops: list = field(default_factory=lambda: [0.3, 0.3, 0.6, 0.6])  # one pseudo query per drop rate
    validation_ratio: float = 0.1  # products (outside the test holdout) whose queries pick the epoch

    def __post_init__(self):
        check_positive(self, "max_epochs", "lr", "batch_size", "temperature", "patience", prefix="relevance.train")
        if not 0 < self.validation_ratio < 1:
            raise ValueError(f"relevance.train.validation_ratio must be in (0, 1), got {self.validation_ratio}")
        if not self.query_drops or not all(0 <= d < 1 for d in self.query_drops):
            raise ValueError(f"relevance.train.query_drops must be rates in [0, 1), got {self.query_drops}")


def pseudo_queries(catalog: Catalog, rows: Sequence[int], drops: Sequence[float], seed: int) -> tuple[list[str], list[int]]:
    """Title queries of the products at ``rows``, one per drop rate (deterministic in ``seed``)."""
    texts, targets = [], []
    for k, drop in enumerate(drops):
        rng = np.random.default_rng([seed, 200, k])
        for i in rows:
            q = title_query(catalog.products[i], rng, drop)
            if q:
                texts.append(q)
                targets.append(int(i))
    return texts, targets


def bag_of_words(texts: Sequence[str | None], vocab: dict[str, int] | None = None) -> tuple[torch.Tensor, dict]:
    """Binary ``[len(texts), V]`` bags of lower-cased words over ``vocab`` (built from ``texts`` when ``None``)."""
    words = [set(re.findall(r"\w+", (t or "").lower())) for t in texts]
    vocab = vocab if vocab is not None else {w: i for i, w in enumerate(sorted(set().union(*words)))}
    out = torch.zeros(len(texts), len(vocab))
    for r, ws in enumerate(words):
        out[r, [vocab[w] for w in ws if w in vocab]] = 1.0
    return out, vocab


def masked_info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
                    ignore: torch.Tensor | None = None, symmetric: bool = False) -> torch.Tensor:
    """InfoNCE with in-batch negatives; ``ignore [B, B]`` marks pairs that are no negatives (the diagonal stays)."""
    logits = anchor @ positive.t() / temperature
    if ignore is not None:
        logits = logits.masked_fill(ignore & ~torch.eye(len(anchor), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(anchor))
    loss = F.cross_entropy(logits, target)
    return (loss + F.cross_entropy(logits.t(), target)) / 2 if symmetric else loss


def _duplicates(features: ProductFeatures, rows: torch.Tensor, threshold: float) -> torch.Tensor:
    x = F.normalize(features.image[rows], dim=-1)
    has = features.image_mask[rows]
    return (x @ x.t() > threshold) & has[:, None] & has[None, :]


def fit_relevance(model: RelevanceEncoder, features: ProductFeatures, query_features: torch.Tensor,
                  query_targets: torch.Tensor, query_words: torch.Tensor, product_words: torch.Tensor,
                  train_rows: torch.Tensor, config: RelevanceTrainConfig, validate: Callable[[], float],
                  seed: int = 0) -> list[dict]:
    """Train ``model`` in place on pseudo queries (raw text features ``query_features [M, d]`` of the products
    ``query_targets [M]``, their bags of words ``query_words``); ``validate()`` scores the model as it is."""
    cfg, f = config, features
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    both = train_rows[(f.image_mask & f.text_mask)[train_rows]]
    stopper, history = EarlyStopping(model, cfg.patience), []
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        perm, pairs = torch.randperm(len(query_targets), generator=g), both[torch.randperm(both.numel(), generator=g)]
        losses = []
        for b, start in enumerate(range(0, len(perm), cfg.batch_size)):
            idx = perm[start:start + cfg.batch_size]
            rows = query_targets[idx]
            q = model.embed_query_features(text=query_features[idx])
            p = model(f.image[rows], f.image_mask[rows], f.text[rows], f.text_mask[rows])
            n = query_words[idx].sum(1, keepdim=True)
            contains = ((query_words[idx] @ product_words[rows].t()) >= n) & (n > 0)
            ignore = contains | (rows[:, None] == rows[None, :]) | _duplicates(f, rows, cfg.duplicate_image)
            loss = masked_info_nce(q, p, cfg.temperature, ignore)
            has_image = f.image_mask[rows]
            if cfg.image_weight and has_image.sum() > 1:
                loss = loss + cfg.image_weight * masked_info_nce(
                    q[has_image], model.towers["image"](f.image[rows[has_image]]), cfg.temperature,
                    ignore[has_image][:, has_image])
            pair = pairs[(b * cfg.batch_size) % max(1, pairs.numel()):][:cfg.batch_size]
            if cfg.crossmodal_weight and pair.numel() > 1:
                loss = loss + cfg.crossmodal_weight * masked_info_nce(
                    model.towers["text"](f.text[pair]), model.towers["image"](f.image[pair]), cfg.temperature,
                    _duplicates(f, pair, cfg.duplicate_image), symmetric=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            score = validate()
        history.append({"epoch": epoch, "relevance/loss": float(np.mean(losses)), "relevance/val": score})
        log.info("relevance epoch %d: loss %.4f, validation %.4f", epoch, history[-1]["relevance/loss"], score)
        if stopper.step(score):
            break
    stopper.restore()
    model.eval()
    return history


def train_relevance(model: RelevanceEncoder, catalog: Catalog, features: ProductFeatures, encoder,
                    validation_sets: Sequence[QuerySet], train_products: torch.Tensor, config: RelevanceTrainConfig,
                    seed: int) -> list[dict]:
    """Pseudo queries of ``train_products`` (raw query features from ``encoder``'s extractors), then
    :func:`fit_relevance`, keeping the epoch best on ``validation_sets``; returns its history."""
    train_rows = train_products.nonzero().flatten()
    texts, targets = pseudo_queries(catalog, train_rows.tolist(), config.query_drops, seed)
    if not texts:
        raise NoPseudoQueries("no training product has a title")
    product_words, vocab = bag_of_words([product_document(p) for p in catalog.products])
    query_words, _ = bag_of_words(texts, vocab)

    def validate() -> float:
        items = model(features.image, features.image_mask, features.text, features.text_mask)
        metrics = evaluate_model(lambda feats: model.embed_query_features(**feats), validation_sets, items, (10,))
        return validation_objective(metrics)

    query_features = encoder.query_features(text=texts)["text"]
    history = fit_relevance(model, features, query_features, torch.tensor(targets), query_words, product_words,
                            train_rows, config, validate, seed)
    if model.classifier is not None:
        fit_query_classifier(model, query_features, torch.tensor(targets), catalog)
    return history


@torch.enable_grad()
def fit_query_classifier(model: RelevanceEncoder, query_features: torch.Tensor, query_targets: torch.Tensor,
                         catalog: Catalog, l2: float = 1e-3, steps: int = 100) -> None:
    """Fit ``model.classifier`` (multinomial logistic regression, L-BFGS) on pseudo queries -> their products'
    categories; queries of products outside ``model.config.categories`` are left out."""
    index = {c: i for i, c in enumerate(model.config.categories)}
    labels = torch.tensor([index.get(product_type(catalog.products[t]), -1) for t in query_targets.tolist()])
    x, y = query_features[labels >= 0], labels[labels >= 0]
    layer = model.classifier
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model.category_logits(x), y) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    layer.train()
    opt.step(closure)
    layer.eval()


def validation_objective(metrics: dict[str, float]) -> float:
    """The search objective on validation queries: the mean of the :data:`VALIDATION_METRICS` present."""
    return float(np.mean([metrics[k] for k in VALIDATION_METRICS if k in metrics] or [0.0]))


def choose_fusion_weights(searcher, validation_sets: Sequence[QuerySet], grids: dict[str, Sequence[float]],
                          title_floor: float | None = None, max_passes: int = 3
                          ) -> tuple[dict[str, float], dict[str, float]]:
    """The fusion weights of ``searcher.hybrid`` (``bm25``, ``category``: text query sets; ``image``: image
    queries) by coordinate ascent: one after the other in ``grids`` order, each the grid point with the best served
    :func:`validation_objective` (ties: the first) less 10x any shortfall of title recall@10 below ``title_floor``
    (what the best baseline scores, less a tolerance), in passes until one changes nothing (at most
    ``max_passes``); sets them and returns them with the validation metrics."""
    hybrid, chosen, metrics = searcher.hybrid, {}, {}

    def selection(scored: dict[str, float]) -> float:
        title = scored.get("text_query/recall@10")
        shortfall = max(0.0, title_floor - title) if title_floor is not None and title is not None else 0.0
        return validation_objective(scored) - 10 * shortfall

    for _ in range(max_passes):
        before = dict(chosen)
        for name, grid in grids.items():
            sets = [qs for qs in validation_sets if (qs.name == "image_query") == (name == "image")]
            best, best_value, best_metrics = getattr(hybrid, f"{name}_weight"), -np.inf, {}
            for weight in grid if sets else ():
                setattr(hybrid, f"{name}_weight", weight)
                scored = evaluate_served(searcher, sets, (10,))
                if selection(scored) > best_value:
                    best, best_value, best_metrics = weight, selection(scored), scored
            setattr(hybrid, f"{name}_weight", best)
            chosen[name] = best
            metrics.update(best_metrics)
        if chosen == before:
            break
    return chosen, metrics


def validation_split(holdout: torch.Tensor, ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(validation, train)`` product masks outside the test ``holdout``: a ``ratio`` of those products validate."""
    rng = torch.Generator().manual_seed(seed + 1)
    candidates = (~holdout).nonzero().flatten()
    chosen = candidates[torch.randperm(candidates.numel(), generator=rng)[:int(round(ratio * candidates.numel()))]]
    validation = torch.zeros_like(holdout)
    validation[chosen] = True
    return validation, ~holdout & ~validation

