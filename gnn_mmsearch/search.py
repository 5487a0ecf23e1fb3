"""Answer queries from a saved run (encoder + index + catalog), with optional MMR.

Queries: text, image, text and image together, a product id, a user's history (product ids), or a batch of texts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .data.catalog import Catalog
from .index import Filter, VectorIndex, load_index
from .models.encoder import MultimodalGraphEncoder
from .ranking import RankingPipeline, RankQuery
from .ranking.modal import split_query_features
from .ranking.personalize import user_vector
from .ranking.train import load_pipeline
from .rerank import mmr

RUN_INFO = "run.json"
log = logging.getLogger(__name__)


@dataclass
class Hit:
    id: str
    score: float
    title: str | None
    category: str
    price: float | None
    stages: dict[str, float] | None = None  # each ranking stage's score (retrieval, score, personal, final)


def index_attributes(catalog: Catalog) -> list[dict]:
    """Per-product attributes the index filters on."""
    return [{"category": p.category, "price": p.price, "in_stock": True} for p in catalog.products]


class Searcher:
    def __init__(self, encoder: MultimodalGraphEncoder, index: VectorIndex, catalog: Catalog,
                 mmr_lambda: float | None = None, candidates: int = 100, ranking: RankingPipeline | None = None):
        """``ranking``: the staged ranking pipeline (``rerank=rules|lambdamart|ranksvm|personalized``); it then
        does the MMR stage too."""
        self.encoder, self.index, self.catalog = encoder, index, catalog
        self.mmr_lambda, self.candidates, self.ranking = mmr_lambda, candidates, ranking

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Searcher":
        run_dir = Path(run_dir)
        info_path = run_dir / RUN_INFO
        if not info_path.exists():
            raise FileNotFoundError(f"{run_dir} is not a finished gnn-mmsearch run (no {RUN_INFO})")
        info = json.loads(info_path.read_text())
        if "catalog_root" not in info:
            raise FileNotFoundError(f"{run_dir} is a top-N recommendation run (MMRec data): it has no catalog or "
                                    "index to search")
        catalog_root = Path(info["catalog_root"])
        if not (catalog_root / "catalog.json").exists():
            raise FileNotFoundError(f"the run's catalog is gone from {catalog_root}; re-run `gnn-mmsearch run`")
        rerank = info.get("rerank", {})
        catalog = Catalog.load(catalog_root)
        return cls(MultimodalGraphEncoder.from_pretrained(run_dir / "encoder"), load_index(run_dir / "index"),
                   catalog, rerank.get("mmr_lambda"), rerank.get("candidates", 100),
                   load_pipeline(rerank, catalog, run_dir))

    def search(self, text: str | None = None, image: str | Path | None = None, product: str | None = None,
               history: Sequence[str] | None = None, k: int = 10, filter: Filter | None = None,
               mmr_lambda: float | None = None, decay: float | None = None, user: str | None = None) -> list[Hit]:
        """Top-``k`` products for one query: text and/or image (both given: one combined query), a product id (the
        product itself excluded) or a ``history`` of product ids (see :meth:`user_vector`; those ids excluded).
        ``user``: a user id whose interactions personalize the ranking stages (unknown or no history: unpersonalized)."""
        kinds = [name for name, given in (("a text or image query", text is not None or image is not None),
                                          ("a product id", product is not None), ("a history", history is not None))
                 if given]
        if len(kinds) != 1:
            raise ValueError("give exactly one of a text and/or image query, a product id or a history"
                             + (f", not {' and '.join(kinds)}" if kinds else ""))
        if product is not None:
            if product not in self.index:
                raise KeyError(f"unknown product id {product!r}")
            query, exclude = self.index.vectors([product]), [product]
        elif history is not None:
            query, exclude = self.user_vector(history, decay)
        else:
            raw = self.encoder.query_features(text, image)
            query, exclude = self.encoder.embed_queries(raw).detach().numpy(), []
        if self.ranking is not None:
            modal = split_query_features(raw, self.ranking.table.modal)[0] if text or image else {}
            return self._staged(query, exclude, k, filter,
                                self._rank_query(query[0], product, history, user, modal), mmr_lambda)
        return self._rank(query, [exclude], k, filter, mmr_lambda)[0]

    def user_history(self, user: str) -> list[str]:
        """A user's interacted product ids, oldest first (empty for an unknown user)."""
        return [i.item for i in sorted((i for i in self.catalog.interactions if i.user == user),
                                       key=lambda i: i.timestamp)]

    def _rank_query(self, query: np.ndarray, product: str | None, history: Sequence[str] | None,
                    user: str | None, modal: dict[str, np.ndarray]) -> RankQuery:
        """Graph anchors (the query product, the history or the user's items), the user vector (cold: ``None``) and
        a text / image query's raw features ``modal`` (product and history queries have none: their similarities
        default)."""
        items = ([product] if product is not None else
                 [h for h in ([history] if isinstance(history, str) else history or []) if h in self.index])
        if user is not None:
            items = self.user_history(user)
            if not items:
                log.info("user %s has no history: unpersonalized ranking", user)
        anchors = self.ranking.table.rows(items)
        personal = history is not None or user is not None
        vec = self.ranking.users.user(self.index.vectors(items), query) if personal and items else None
        return RankQuery(anchors=anchors, user=vec, modal=modal)

    def _staged(self, query: np.ndarray, exclude: list[str], k: int, filter: Filter | None, rq: RankQuery,
                mmr_lambda: float | None) -> list[Hit]:
        """The ranking pipeline over the index's top ``candidates`` (``mmr_lambda`` overrides its MMR stage)."""
        res = self.index.search(query, max(k, self.candidates), filter=filter, exclude=[exclude])
        ids, scores = res.ids[0], res.scores[0]
        ranked = self.ranking.rank(ids, scores, self.index.vectors(ids), rq, k, mmr_lambda)
        return [replace(self._hit(pid, ranked.stages["final"][r]),
                        stages={name: float(v[r]) for name, v in ranked.stages.items()})
                for r, pid in enumerate(ranked.ids)]

    def search_batch(self, texts: Sequence[str], k: int = 10, filter: Filter | None = None,
                     mmr_lambda: float | None = None) -> list[list[Hit]]:
        """Top-``k`` products for each text query: one encoder forward pass and one index search for the batch."""
        if not texts:
            return []
        raw = self.encoder.query_features(text=list(texts))
        query = self.encoder.embed_queries(raw).detach().numpy()
        if self.ranking is not None:
            modal = split_query_features(raw, self.ranking.table.modal)
            return [self._staged(q[None], [], k, filter, RankQuery(modal=m), mmr_lambda) for q, m in zip(query, modal)]
        return self._rank(query, None, k, filter, mmr_lambda)

    def user_vector(self, history: Sequence[str], decay: float | None = None) -> tuple[np.ndarray, list[str]]:
        """A user's query vector from their history (product ids, oldest first) and the known ids in it.

        The vector is the (unit-norm) mean of the items' stored index vectors; with ``decay`` in (0, 1] the ``i``-th most recent
        item weighs ``decay ** i`` (repeats count each time). Unknown ids are skipped with a warning.
        """
        if decay is not None and not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        history = [history] if isinstance(history, str) else list(history)
        known = [pid for pid in history if pid in self.index]
        unknown = [pid for pid in history if pid not in self.index]
        if not known:
            raise KeyError(f"no known product id in the history {history!r}" if history
                           else "empty history: give at least one product id")
        if unknown:
            log.warning("history: skipped %d unknown product id(s): %s", len(unknown), ", ".join(unknown))
        vector = user_vector(self.index.vectors(known), "mean" if decay is None else "recency", decay=decay or 1.0)
        if vector is None:
            raise ValueError(f"the history {known!r} cancels out to no direction")
        return vector[None], known

    def _rank(self, query: np.ndarray, exclude: list[list[str]] | None, k: int, filter: Filter | None,
              mmr_lambda: float | None) -> list[list[Hit]]:
        """Search the index for each query row (``exclude[q]``: ids never returned), optionally re-ranked by MMR."""
        lam = self.mmr_lambda if mmr_lambda is None else mmr_lambda
        depth = max(k, self.candidates) if lam is not None else k
        res = self.index.search(query, depth, filter=filter, exclude=exclude)
        out = []
        for ids, scores in zip(res.ids, res.scores):
            if lam is not None and ids:
                order = mmr(scores, self.index.vectors(ids), k, lam)
                ids, scores = [ids[i] for i in order], scores[order]
            out.append([self._hit(i, s) for i, s in zip(ids[:k], scores[:k])])
        return out

    def _hit(self, pid: str, score: float) -> Hit:
        p = self.catalog.products[self.catalog.index_of[pid]]
        return Hit(pid, float(score), p.title, " > ".join(p.category), p.price)


def format_hits(hits: list[Hit], empty: str = "(no results)", explain_scores: bool = False) -> str:
    """One indented line per hit, or ``empty`` when there is none; ``explain_scores`` adds each stage's score."""
    if not hits:
        return f"  {empty}"
    return "\n".join(f"  {r:>2}. {h.score:.3f}  {h.id}  {h.title or '(no title)'}  [{h.category}]"
                     + (f"  ${h.price:.2f}" if h.price is not None else "")
                     + (f"\n        {_stages(h)}" if explain_scores else "") for r, h in enumerate(hits, 1))


def _stages(hit: Hit) -> str:
    stages = hit.stages or {"retrieval": hit.score}
    return "  ".join(f"{name}={value:.3f}" for name, value in stages.items())
