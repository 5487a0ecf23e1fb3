"""Answer text, image and product queries from a saved run (encoder + index + catalog), with optional MMR."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.catalog import Catalog
from .index import Filter, VectorIndex, load_index
from .models.encoder import MultimodalGraphEncoder
from .rerank import mmr

RUN_INFO = "run.json"


@dataclass
class Hit:
    id: str
    score: float
    title: str | None
    category: str
    price: float | None


def index_attributes(catalog: Catalog) -> list[dict]:
    """Per-product attributes the index filters on."""
    return [{"category": p.category, "price": p.price, "in_stock": True} for p in catalog.products]


class Searcher:
    def __init__(self, encoder: MultimodalGraphEncoder, index: VectorIndex, catalog: Catalog,
                 mmr_lambda: float | None = None, candidates: int = 100):
        self.encoder, self.index, self.catalog = encoder, index, catalog
        self.mmr_lambda, self.candidates = mmr_lambda, candidates

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Searcher":
        run_dir = Path(run_dir)
        info_path = run_dir / RUN_INFO
        if not info_path.exists():
            raise FileNotFoundError(f"{run_dir} is not a finished gnn-mmsearch run (no {RUN_INFO})")
        info = json.loads(info_path.read_text())
        catalog_root = Path(info["catalog_root"])
        if not (catalog_root / "catalog.json").exists():
            raise FileNotFoundError(f"the run's catalog is gone from {catalog_root}; re-run `gnn-mmsearch run`")
        rerank = info.get("rerank", {})
        return cls(MultimodalGraphEncoder.from_pretrained(run_dir / "encoder"), load_index(run_dir / "index"),
                   Catalog.load(catalog_root), rerank.get("mmr_lambda"), rerank.get("candidates", 100))

    def search(self, text: str | None = None, image: str | Path | None = None, product: str | None = None,
               k: int = 10, filter: Filter | None = None, mmr_lambda: float | None = None) -> list[Hit]:
        """Top-``k`` products for a text and/or image query, or for a product id (the product itself excluded)."""
        if product is not None:
            if product not in self.index:
                raise KeyError(f"unknown product id {product!r}")
            query, exclude = self.index.vectors([product]), [[product]]
        else:
            query, exclude = self.encoder.encode_query(text=text, image=image).numpy(), None
        lam = self.mmr_lambda if mmr_lambda is None else mmr_lambda
        depth = max(k, self.candidates) if lam is not None else k
        res = self.index.search(query, depth, filter=filter, exclude=exclude)
        ids, scores = res.ids[0], np.asarray(res.scores[0])
        if lam is not None and ids:
            order = mmr(scores, self.index.vectors(ids), k, lam)
            ids, scores = [ids[i] for i in order], scores[order]
        return [self._hit(i, s) for i, s in zip(ids[:k], scores[:k])]

    def _hit(self, pid: str, score: float) -> Hit:
        p = self.catalog.products[self.catalog.index_of[pid]]
        return Hit(pid, float(score), p.title, " > ".join(p.category), p.price)


def format_hits(hits: list[Hit]) -> str:
    if not hits:
        return "  (no results)"
    return "\n".join(f"  {r:>2}. {h.score:.3f}  {h.id}  {h.title or '(no title)'}  [{h.category}]"
                     + (f"  ${h.price:.2f}" if h.price is not None else "") for r, h in enumerate(hits, 1))
