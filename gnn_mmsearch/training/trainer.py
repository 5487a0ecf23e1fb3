"""Training loop: InfoNCE on co-purchase links + query-to-product alignment, early stopping on validation."""
from __future__ import annotations

import logging
from dataclasses import dataclass
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


class Trainer:
    """Full-batch trainer for catalogs that fit in memory (the whole graph is propagated each step).

    Each epoch a fresh ``supervision_ratio`` of the train links becomes the target set and is removed from the
    message-passing graph (PyG's ``disjoint_train_ratio`` idea, resampled per epoch), so the encoder cannot
    read a target link off its own input.
    """

    def __init__(self, model: MultimodalGraphEncoder, features: ProductFeatures, split: EdgeSplit,
                 query_holdout: torch.Tensor, config: TrainConfig, seed: int = 0,
                 on_epoch_end: Callable[[dict], None] | None = None):
        self.model, self.split, self.config = model, split, config
        self.device = next(model.parameters()).device  # features, links and sampling follow the model
        self.features = features.to(self.device)
        holdout = query_holdout.to(self.device)
        self.align_pool = {m: (getattr(self.features, f"{m}_mask") & ~holdout).nonzero().flatten()
                           for m in model.config.modalities}
        self.loss = InfoNCELoss(config.temperature)
        self.generator = torch.Generator(self.device).manual_seed(seed)  # the same draws on every DDP rank
        self.on_epoch_end = on_epoch_end
        self.history: list[dict] = []

    def embed(self, edge_index: torch.Tensor) -> torch.Tensor:
        f = self.features
        return self.model(f.image, f.image_mask, f.text, f.text_mask, edge_index.to(self.device))

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
            perm = train_links[:, torch.randperm(train_links.size(1), generator=self.generator, device=device)]
            n_sup = max(1, int(cfg.supervision_ratio * perm.size(1)))
            targets = perm[:, :n_sup]
            graph = remove_pairs(train_graph, targets, split.num_nodes)
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
            stop = False
            if distributed.is_main():
                row.update(self.validate())
                score = row[f"val/{cfg.monitor}"]
                bar.set_postfix(loss=f"{row['train/loss']:.3f}", **{cfg.monitor: f"{score:.4f}"})
                stop = stopper.step(score)
                log.info("epoch %d: loss %.4f, val %s %.4f (best %.4f)", epoch, row["train/loss"], cfg.monitor,
                         score, stopper.best)
                if stop:
                    log.info("early stop at epoch %d (best val %s %.4f)", epoch, cfg.monitor, stopper.best)
            self.history.append(row)
            if self.on_epoch_end:
                self.on_epoch_end(row)
            if distributed.from_main(stop, device):
                break
        stopper.restore()
        self.model.eval()
        return self.history

    def _step_loss(self, graph: torch.Tensor, batch: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """One step's loss: InfoNCE of the ``batch`` links against in-batch and ``neg`` negatives, plus alignment."""
        z = self.embed(graph)
        return self.loss(z[batch[0]], z[batch[1]], z[neg]) + self.config.align_weight * self._alignment_loss(z)

    def _alignment_loss(self, z: torch.Tensor) -> torch.Tensor:
        """A product's own text / image, embedded by the query tower, must retrieve that product."""
        total = z.new_zeros(())
        for modality, pool in self.align_pool.items():
            if pool.numel() < 2:
                continue
            order = torch.randperm(pool.numel(), generator=self.generator, device=self.device)
            idx = pool[order[: self.config.batch_size]]
            idx = idx[distributed.shard(idx.numel())]
            q = self.model.embed_query_features(**{modality: getattr(self.features, modality)[idx]})
            total = total + InfoNCELoss(self.config.temperature, symmetric=False)(q, z[idx])
        return total

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        metrics = evaluate_copurchase(self.embed(self.split.message_passing("val")).cpu(), self.split, "val", ks=(10, 20))
        return {f"val/{k}": v for k, v in metrics.items()}
