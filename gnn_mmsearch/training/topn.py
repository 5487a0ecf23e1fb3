"""Training loop of the top-N recommenders under MMRec's protocol.

Each epoch shuffles the training interactions into batches of ``(user, item)`` and draws one negative item per
interaction uniformly among the items the user has no training interaction with. After every ``eval_every``
epochs the model ranks all items for the validation users (training items excluded); training stops after
``patience`` evaluations without a better ``val/<monitor>`` and the best state is restored.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data.mmrec import Interactions
from ..evaluation.topn import rank_topn, topn_metrics
from ..models._recommender import RECOMMENDERS, Recommender
from ._checks import check_positive
from ._early_stopping import EarlyStopping

log = logging.getLogger(__name__)


@dataclass
class TopNTrainConfig:
    max_epochs: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 2048
    patience: int = 20          # evaluations without improvement before stopping
    eval_every: int = 1
    monitor: str = "recall@20"  # val/<monitor> picks the epoch kept: recall|ndcg|precision|map@K

    def __post_init__(self):
        check_positive(self, "max_epochs", "lr", "batch_size", "patience", "eval_every")
        if self.weight_decay < 0:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        metric, _, k = self.monitor.partition("@")
        if metric not in ("recall", "ndcg", "precision", "map") or not k.isdigit() or int(k) < 1:
            raise ValueError(f"train.monitor must be recall|ndcg|precision|map@K, got {self.monitor!r}")


class NegativeSampler:
    """Uniform negatives that are not among the user's training items (rejection sampling, vectorised)."""

    def __init__(self, train, rng: np.random.Generator):
        coo = train.tocoo()
        self.num_items = train.shape[1]
        self.known = np.sort(coo.row.astype(np.int64) * self.num_items + coo.col)
        self.rng = rng

    def __call__(self, users: np.ndarray) -> np.ndarray:
        neg = self.rng.integers(0, self.num_items, users.size)
        redo = self._known(users, neg)
        while redo.any():
            neg[redo] = self.rng.integers(0, self.num_items, int(redo.sum()))
            redo[redo] = self._known(users[redo], neg[redo])
        return neg

    def _known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self.num_items + items
        pos = np.searchsorted(self.known, keys).clip(max=self.known.size - 1)
        return self.known[pos] == keys


class TopNTrainer:
    """Trains ``model`` where its parameters are. Under ``torchrun`` every rank draws the same shuffle and negatives
    (one seed) and keeps its share of each batch, DDP averages the gradients (so N processes follow the
    single-process run with the same ``batch_size``), and rank 0 evaluates and decides when to stop."""

    def __init__(self, model: Recommender, data: Interactions, config: TopNTrainConfig, seed: int = 0,
                 ks=(5, 10, 20, 50), on_epoch_end: Callable[[dict], None] | None = None):
        self.model, self.data, self.config, self.ks = model, data, config, tuple(ks)
        self.device = next(model.parameters()).device
        self.rng = np.random.default_rng(seed)
        self.sampler = NegativeSampler(data.train, self.rng)
        coo = data.train.tocoo()
        self.users, self.items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        self.on_epoch_end = on_epoch_end
        self.history: list[dict] = []

    def fit(self) -> list[dict]:
        cfg, main = self.config, distributed.is_main()
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        step = distributed.data_parallel(self.model, self.model.loss)
        stopper, stop = EarlyStopping(self.model, cfg.patience), False
        bar = tqdm(range(1, cfg.max_epochs + 1), desc=f"train {RECOMMENDERS.name_of(self.model)}", unit="epoch",
                   disable=None if main else True)
        for epoch in bar:
            t = time.perf_counter()
            loss = self._train_epoch(opt, step)
            if not np.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at epoch {epoch}; lower train.lr")
            row = {"epoch": epoch, "train/loss": loss, "train/epoch_s": time.perf_counter() - t}
            if main and (epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs):
                row.update({f"val/{k}": v for k, v in self.evaluate("valid").items()})
                score = row[f"val/{cfg.monitor}"]
                stop = stopper.step(score)
                bar.set_postfix(loss=f"{loss:.4f}", **{cfg.monitor: f"{score:.4f}", "best": f"{stopper.best:.4f}"})
                log.info("epoch %d: loss %.4f, val %s %.4f (best %.4f), %.1f s", epoch, loss, cfg.monitor, score,
                         stopper.best, row["train/epoch_s"])
                if stop:
                    log.info("early stop at epoch %d (best val %s %.4f)", epoch, cfg.monitor, stopper.best)
            self.history.append(row)
            if self.on_epoch_end:
                self.on_epoch_end(row)
            if distributed.from_main(stop, self.device):
                break
        stopper.restore()
        self.model.eval()
        return self.history

    def _train_epoch(self, opt: torch.optim.Optimizer, step: Callable[..., torch.Tensor]) -> float:
        """One pass over the training interactions; the mean loss over all of them (all ranks)."""
        self.model.train()
        self.model.resample(self.rng)
        order = self.rng.permutation(self.users.size)
        world, total = distributed.world_size(), torch.zeros((), device=self.device)
        for start in range(0, order.size, self.config.batch_size):
            idx = order[start:start + self.config.batch_size]
            if idx.size < world:  # a last batch too small to give every rank an interaction
                continue
            users = self.users[idx]
            batch = np.stack([users, self.items[idx], self.sampler(users)])[:, distributed.shard(idx.size)]
            batch = torch.from_numpy(batch).to(self.device, non_blocking=True)  # one copy per batch
            loss = step(*batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * batch.size(1)
        return distributed.all_reduce_sum(total).item() / order.size

    def evaluate(self, split: str) -> dict[str, float]:
        """Full ranking for the users of ``split``, their training items excluded: every K on the test split,
        the monitored K on the valid split (each epoch; a smaller top-K is faster)."""
        ks = self.ks if split == "test" else (int(self.config.monitor.split("@")[1]),)
        users, top = self.rank(split, max(ks))
        return topn_metrics(users, top, self.data.split(split), ks)

    @torch.no_grad()
    def rank(self, split: str, k: int) -> tuple[np.ndarray, torch.Tensor]:
        """The users of ``split`` and their top-``k`` items (training items excluded), as :func:`rank_topn`."""
        self.model.eval()
        return rank_topn(self.model.scorer(), self.data.split(split), self.data.train, k)
