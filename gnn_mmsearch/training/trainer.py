"""Training loop: InfoNCE on co-purchase links + query-to-product alignment, early stopping on validation."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data.splits import EdgeSplit, remove_pairs
from ..evaluation.retrieval import evaluate_copurchase
from ..features import ProductFeatures
from ..losses import InfoNCELoss
from ..models.encoder import MultimodalGraphEncoder
from ._checks import check_positive
from ._early_stopping import EarlyStopping
from .sampling import NeighborSampler

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    max_epochs: int = 300
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    temperature: float = 0.1
    num_negatives: int = 256
    align_weight: float = 1.0
    supervision_ratio: float = 0.3  # share of train links used as targets each epoch, hidden from message passing
    patience: int = 20
    monitor: str = "recall@10"  # val/<monitor> picks the epoch kept: recall|precision|ndcg|mrr @ 10|20
    batching: str = "full"  # full: propagate the whole graph each step | neighbor: a sampled subgraph per step
    num_neighbors: list[int] = field(default_factory=lambda: [10, 10])  # neighbor: fan-out per GNN layer (-1: all)

    def __post_init__(self):
        check_positive(self, "max_epochs", "batch_size", "temperature", "num_negatives", "patience")
        if not 0 < self.supervision_ratio <= 1:
            raise ValueError(f"train.supervision_ratio must be in (0, 1], got {self.supervision_ratio}")
        for name in ("lr", "weight_decay", "align_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        metric, _, k = self.monitor.partition("@")
        if metric not in ("recall", "precision", "ndcg", "mrr") or k not in ("10", "20"):
            raise ValueError(f"train.monitor must be recall|precision|ndcg|mrr@10|20, got {self.monitor!r}")
        if self.batching not in ("full", "neighbor"):
            raise ValueError(f"train.batching must be full|neighbor, got {self.batching!r}")
        if any(k == 0 or k < -1 for k in self.num_neighbors):
            raise ValueError(f"train.num_neighbors must be fan-outs >= 1 (or -1: all), got {list(self.num_neighbors)}")


def check_fan_out(config: TrainConfig, gnn_layers: int) -> None:
    """Neighbour sampling needs one fan-out per GNN layer (one-line ``ValueError`` otherwise)."""
    if config.batching == "neighbor" and len(config.num_neighbors) != gnn_layers:
        raise ValueError(f"train.num_neighbors needs one fan-out per GNN layer (model.gnn.layers={gnn_layers}), "
                         f"got {list(config.num_neighbors)}")


class Trainer:
    """Trainer of the graph encoder: full-batch (``batching="full"``: the whole graph is propagated each step) or
    mini-batch (``"neighbor"``: each step propagates only the subgraph sampled around the step's link endpoints,
    negatives and alignment products, ``num_neighbors`` per hop). Validation propagates the whole graph.

    Each epoch a fresh ``supervision_ratio`` of the train links becomes the target set and is removed from the
    message-passing graph (PyG's ``disjoint_train_ratio`` idea, resampled per epoch), so the encoder cannot
    read a target link off its own input; val/test links are never in it. ``max_val_queries`` caps the products
    each validation ranks (``eval.max_queries``).
    """

    def __init__(self, model: MultimodalGraphEncoder, features: ProductFeatures, split: EdgeSplit,
                 query_holdout: torch.Tensor, config: TrainConfig, seed: int = 0,
                 on_epoch_end: Callable[[dict], None] | None = None, max_val_queries: int | None = None):
        self.model, self.split, self.config = model, split, config
        self.seed, self.max_val_queries = seed, max_val_queries
        self.device = next(model.parameters()).device  # features, links and sampling follow the model
        self.features = features.to(self.device)
        holdout = query_holdout.to(self.device)
        self.align_pool = {m: (getattr(self.features, f"{m}_mask") & ~holdout).nonzero().flatten()
                           for m in model.config.modalities}
        self.loss = InfoNCELoss(config.temperature)
        check_fan_out(config, model.config.gnn_layers)
        self.generator = torch.Generator(self.device).manual_seed(seed)  # the same draws on every DDP rank
        # neighbour sampling draws depend on each rank's own links: a generator per rank, apart from the shared one
        self.sample_generator = torch.Generator(self.device).manual_seed(seed + 1_000_003 * distributed.rank())
        self.on_epoch_end = on_epoch_end
        self.history: list[dict] = []
        self.epoch_timings: list[dict] = []  # per epoch: train_s, links (supervised), validate_s (rank 0)

    def embed(self, edge_index: torch.Tensor, nodes: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of all products, or of ``nodes`` only with ``edge_index`` over their positions (a subgraph)."""
        f = self.features
        if nodes is None:
            return self.model(f.image, f.image_mask, f.text, f.text_mask, edge_index.to(self.device))
        return self.model(f.image[nodes], f.image_mask[nodes], f.text[nodes], f.text_mask[nodes], edge_index)

    def fit(self) -> list[dict]:
        """Train; under ``torchrun`` each rank takes its share of every batch's target links and alignment
        products (the negatives are shared), DDP averages the gradients, and rank 0 validates and decides when to
        stop."""
        cfg, split, device = self.config, self.split, self.device
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step = distributed.data_parallel(self.model, self._step_loss, find_unused_parameters=True)
        train_links, train_graph = split.train.to(device), split.message_passing("train").to(device)
        stopper, world = EarlyStopping(self.model, cfg.patience), distributed.world_size()
        bar = tqdm(range(1, cfg.max_epochs + 1), desc="train", unit="epoch", leave=False,
                   disable=None if distributed.is_main() else True)
        for epoch in bar:
            self.model.train()
            started = time.perf_counter()
            perm = train_links[:, torch.randperm(train_links.size(1), generator=self.generator, device=device)]
            n_sup = max(1, int(cfg.supervision_ratio * perm.size(1)))
            targets = perm[:, :n_sup]
            graph = remove_pairs(train_graph, targets, split.num_nodes)
            if cfg.batching == "neighbor":
                graph = NeighborSampler(graph, split.num_nodes, cfg.num_neighbors)
            total, steps = torch.zeros((), device=device), 0
            for start in range(0, n_sup, cfg.batch_size):
                batch = targets[:, start:start + cfg.batch_size]
                if batch.size(1) < world:  # a last batch too small to give every rank a link
                    continue
                neg = torch.randint(0, split.num_nodes, (cfg.num_negatives,), generator=self.generator, device=device)
                loss = step(graph, batch[:, distributed.shard(batch.size(1))], neg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + loss.detach(), steps + 1
            row = {"epoch": epoch, "train/loss": distributed.all_reduce_sum(total).item() / max(1, steps * world)}
            timing = {"train_s": time.perf_counter() - started, "links": n_sup}  # steps and sampling, no validation
            stop = False
            if distributed.is_main():
                started = time.perf_counter()
                row.update(self.validate())
                timing["validate_s"] = time.perf_counter() - started
                score = row[f"val/{cfg.monitor}"]
                bar.set_postfix(loss=f"{row['train/loss']:.3f}", **{cfg.monitor: f"{score:.4f}"})
                stop = stopper.step(score)
                log.info("epoch %d: loss %.4f, val %s %.4f (best %.4f); %.1f s (%.0f links/s), validation %.1f s",
                         epoch, row["train/loss"], cfg.monitor, score, stopper.best, timing["train_s"],
                         n_sup / timing["train_s"], timing["validate_s"])
                if stop:
                    log.info("early stop at epoch %d (best val %s %.4f)", epoch, cfg.monitor, stopper.best)
            self.history.append(row)
            self.epoch_timings.append(timing)
            if self.on_epoch_end:
                self.on_epoch_end(row)
            if distributed.from_main(stop, device):
                break
        stopper.restore()
        self.model.eval()
        return self.history

    def _step_loss(self, graph: torch.Tensor | NeighborSampler, batch: torch.Tensor, neg: torch.Tensor
                   ) -> torch.Tensor:
        """One step's loss: InfoNCE of the ``batch`` links against in-batch and ``neg`` negatives, plus alignment.
        ``graph`` is the edge index to propagate over, or a sampler of the subgraph around the step's products."""
        align = self._alignment_products()
        if isinstance(graph, NeighborSampler):
            nodes, sub = graph.sample(torch.cat([batch.flatten(), neg, *align.values()]), self.sample_generator)
            z, row = self.embed(sub, nodes), lambda ids: torch.searchsorted(nodes, ids)
        else:
            z, row = self.embed(graph), lambda ids: ids
        alignment = z.new_zeros(())
        for modality, idx in align.items():  # a product's own text / image, by the query tower, retrieves it
            q = self.model.embed_query_features(**{modality: getattr(self.features, modality)[idx]})
            alignment = alignment + InfoNCELoss(self.config.temperature, symmetric=False)(q, z[row(idx)])
        return self.loss(z[row(batch[0])], z[row(batch[1])], z[row(neg)]) + self.config.align_weight * alignment

    def _alignment_products(self) -> dict[str, torch.Tensor]:
        """This rank's share of a random batch of products per query modality (those having it, not held out)."""
        products = {}
        for modality, pool in self.align_pool.items():
            if pool.numel() < 2:
                continue
            order = torch.randperm(pool.numel(), generator=self.generator, device=self.device)
            idx = pool[order[: self.config.batch_size]]
            products[modality] = idx[distributed.shard(idx.numel())]
        return products

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        metrics = evaluate_copurchase(self.embed(self.split.message_passing("val")).cpu(), self.split, "val",
                                      (10, 20), self.max_val_queries, self.seed)
        return {f"val/{k}": v for k, v in metrics.items()}
