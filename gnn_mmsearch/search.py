"""Serving: answer queries from a saved run (encoder + index + catalog) through the staged ranking pipeline.

Queries: text, image, video (its keyframes' mean image features: an image query), text with an image or a video, a
product id, a user's history (product ids), or a batch of texts.
Every query takes one path, :meth:`Searcher.serve`: retrieval (text and image queries from the relevance head's
hybrid index when the run has one, product and history queries from the graph index), then
``ranking.RankingPipeline`` (score -> personalize -> diversify, each optional). Nothing here imports training code.
"""
from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ._atomic import write_json
from ._registry import import_modules
from .data.catalog import Catalog
from .index import Filter, SearchResult, VectorIndex, load_index
from .models.encoder import MultimodalGraphEncoder
from .models.relevance import RelevanceEncoder, product_type
from .ranking import Ranked, RankingPipeline, RankQuery, load_pipeline, user_vector
from .ranking.modal import load_modal, split_query_features
from .retrievers.bm25 import BM25Retriever, product_document
from .retrievers.copurchase import CopurchaseGraph, CopurchaseRetrieval, CopurchaseWeights
from .retrievers.hybrid import HybridRetrieval
from .retrievers.term_match import TermMatch
from .run_dir import RunDir

log = logging.getLogger(__name__)


@dataclass
class Hit:
    id: str
    score: float
    title: str | None
    category: str
    price: float | None
    stages: dict[str, float] = field(default_factory=dict)  # each stage's score: retrieval, score, personal, final


def hybrid_retrieval(relevance, head: RelevanceEncoder, index: VectorIndex, catalog: Catalog,
                     images: tuple[np.ndarray, np.ndarray] | None, weights: dict[str, float],
                     expansions: Sequence[Sequence[str]] | None = None,
                     text_features: Callable[[list[str]], torch.Tensor] | None = None,
                     term_vectors: Path | None = None) -> HybridRetrieval:
    """The served first stage of text / image queries (``relevance``: the run's config block; ``weights``: the
    fusion weights of ``bm25``, ``image``, ``category``, ``title``, ``expansion`` and ``match``; ``expansions``: words
    added to each product's BM25 document, in catalog order, see ``retrievers/expansion.py``; ``text_features``: raw
    text features of words, for the term match, whose saved word vectors ``term_vectors`` are read when it exists)."""
    bm25 = BM25Retriever(expansions=expansions, expansion_weight=weights.get("expansion", 0.0),
                         title_weight=weights.get("title", 0.0)).fit(catalog) \
        if weights["bm25"] else None
    type_of = {c: i for i, c in enumerate(head.config.categories)}
    types = np.array([type_of.get(product_type(p), -1) for p in catalog.products], np.int64)
    terms = None
    if weights.get("match") and text_features is not None:
        terms = TermMatch(lambda ws: head.embed_query_features(text=text_features(ws)).detach().numpy(),
                          [product_document(p) for p in catalog.products],
                          term_vectors if term_vectors is not None and term_vectors.exists() else None)
    return HybridRetrieval(head, index, catalog.index_of, bm25, images, relevance.depth, weights["bm25"],
                           weights["image"], types=types, category_weight=weights.get("category", 0.0), terms=terms,
                           match_weight=weights.get("match", 0.0))


def load_expansions(path: Path, catalog: Catalog) -> list[list[str]] | None:
    """The expansion words a run saved (``save_expansions``), in catalog order; ``None`` when it saved none."""
    if not path.exists():
        return None
    try:
        words = json.loads(path.read_text())["words"]
        return [list(words.get(pid, [])) for pid in catalog.ids]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


def save_expansions(path: Path, catalog: Catalog, expansions: Sequence[Sequence[str]], settings: dict) -> None:
    """The words added to each product's BM25 document (products with none left out) and how they were chosen."""
    write_json(path, {**settings, "words": {pid: list(e) for pid, e in zip(catalog.ids, expansions) if e}})


def copurchase_retrieval(index: VectorIndex, catalog: Catalog, edge_types: Sequence[str], weights: CopurchaseWeights,
                         depth: int) -> CopurchaseRetrieval:
    """The served first stage of product queries, over every link of ``edge_types``."""
    graph = CopurchaseGraph(catalog.to_pyg(edge_types).edge_index, len(catalog))
    return CopurchaseRetrieval(index, graph, catalog.index_of, catalog.ids, weights, depth)


def index_attributes(catalog: Catalog) -> list[dict]:
    """Per-product attributes the index filters on."""
    return [{"category": p.category, "price": p.price, "in_stock": True} for p in catalog.products]


class Searcher:
    """Answers queries from an encoder, an index and a catalog; every query goes through ``pipeline``. With
    ``hybrid`` (the relevance head's index + BM25), text and image queries retrieve there; product queries
    retrieve through ``copurchase`` (the graph ``index`` re-scored with the co-purchase graph) when given, history
    queries from the graph ``index``."""

    def __init__(self, encoder: MultimodalGraphEncoder, index: VectorIndex, catalog: Catalog,
                 pipeline: RankingPipeline, hybrid: HybridRetrieval | None = None,
                 copurchase: CopurchaseRetrieval | None = None, run_dir: Path | None = None):
        self.encoder, self.index, self.catalog, self.pipeline = encoder, index, catalog, pipeline
        self.hybrid, self.copurchase = hybrid, copurchase
        self.run_dir = run_dir  # the run it was loaded from (:meth:`from_run`), else None

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Searcher":
        run = RunDir(run_dir).require("search")
        info, cfg = run.info(), run.config()
        import_modules(cfg.get("imports") or [])  # components the run was built with may come from outside
        catalog_root = Path(info["catalog_root"])
        if not (catalog_root / "catalog.json").exists():
            raise FileNotFoundError(f"the run's catalog is gone from {catalog_root}; re-run `gnn-mmsearch run`")
        catalog = Catalog.load(catalog_root)
        encoder = MultimodalGraphEncoder.from_pretrained(run / run.ENCODER)
        pipeline = load_pipeline(cfg.get("ranking") or {}, catalog, encoder.config.graph_edge_types, run / run.RANKER,
                                 run / run.RANKING_FEATURES)
        hybrid = None
        if (run / run.RELEVANCE).is_dir():
            hybrid = hybrid_retrieval(cfg.relevance, RelevanceEncoder.from_pretrained(run / run.RELEVANCE),
                                      load_index(run / run.RELEVANCE_INDEX), catalog,
                                      load_modal(run / run.RANKING_FEATURES, len(catalog)).get("image"),
                                      info.get("fusion_weights", {"bm25": 1.0, "image": 1.0}),
                                      load_expansions(run / run.EXPANSION, catalog),
                                      lambda ws: encoder.query_features(text=ws)["text"], run / run.TERM_VECTORS)
        index = load_index(run / run.INDEX)
        copurchase = copurchase_retrieval(  # runs before the co-purchase weights existed: the graph alone
            index, catalog, encoder.config.graph_edge_types, CopurchaseWeights(**info.get("copurchase_weights", {})),
            (cfg.get("copurchase") or {}).get("depth", 100))
        return cls(encoder, index, catalog, pipeline, hybrid, copurchase, Path(run_dir))

    def search(self, text: str | None = None, image: str | Path | None = None, product: str | None = None,
               history: Sequence[str] | None = None, k: int = 10, filter: Filter | None = None,
               mmr_lambda: float | None = None, decay: float | None = None, user: str | None = None,
               video: str | Path | None = None, frames: int | None = None) -> list[Hit]:
        """Top-``k`` products for one query: text and/or an image or a video (text and a picture given: one combined
        query), a product id (the product itself excluded) or a ``history`` of product ids (see :meth:`user_vector`;
        those ids excluded). A ``video`` is searched as an image query from the mean image features of ``frames``
        keyframes spread over it (default ``features.video.VIDEO_FRAMES``). ``user``: a user id whose interactions
        personalize the ranking stages (unknown or no history: unpersonalized)."""
        content = text is not None or image is not None or video is not None
        kinds = [name for name, given in (("a text, image or video query", content),
                                          ("a product id", product is not None), ("a history", history is not None))
                 if given]
        if len(kinds) != 1:
            raise ValueError("give exactly one of a text, image and/or video query, a product id or a history"
                             + (f", not {' and '.join(kinds)}" if kinds else ""))
        modal, items, raw = {}, [], None
        if product is not None:
            if product not in self.index:
                raise KeyError(f"unknown product id {product!r}")
            vector, exclude, items = self.index.vectors([product]), [product], [product]
        elif history is not None:
            vector, exclude = self.user_vector(history, decay)
            items = exclude
        else:
            raw = self.encoder.query_features(text, image, video, frames)
            vector, exclude = self.encoder.embed_queries(raw).detach().numpy(), []
            modal = split_query_features(raw, self.pipeline.table.modal)[0]
        if user is not None:
            items = self.user_history(user)
            if not items:
                log.info("user %s has no history: unpersonalized ranking", user)
        query = self.pipeline.query(vector[0], self.index.vectors, items, history is not None or user is not None,
                                    modal)
        texts = [text] if raw is not None and text is not None else None
        k = self._capped(k, self.hybrid.index if raw is not None and self.hybrid is not None else self.index,
                         len(exclude))
        products = [product] if product is not None else None
        return self._hits(self.serve(vector, [query], k, filter, [exclude], mmr_lambda, raw, texts, products)[0])

    def search_batch(self, texts: Sequence[str], k: int = 10, filter: Filter | None = None,
                     mmr_lambda: float | None = None) -> list[list[Hit]]:
        """Top-``k`` products for each text query: one encoder forward pass and one index search for the batch."""
        if not texts:
            return []
        k = self._capped(k, self.hybrid.index if self.hybrid is not None else self.index)
        raw = self.encoder.query_features(text=list(texts))
        vectors = self.encoder.embed_queries(raw).detach().numpy()
        queries = [self.pipeline.query(v, self.index.vectors, modal=m)
                   for v, m in zip(vectors, split_query_features(raw, self.pipeline.table.modal))]
        return [self._hits(r) for r in self.serve(vectors, queries, k, filter, None, mmr_lambda, raw, list(texts))]

    def serve(self, vectors: np.ndarray, queries: Sequence[RankQuery], k: int, filter: Filter | None = None,
              exclude: Sequence[Sequence[str]] | None = None, mmr_lambda: float | None = None,
              features: dict | None = None, texts: Sequence[str] | None = None,
              products: Sequence[str] | None = None) -> list[Ranked]:
        """The served top-``k`` of each query: one retrieval for all (:meth:`retrieve`), then the ranking pipeline.

        ``vectors``: graph-space query vectors; ``queries[i]``: what the later stages know about query ``i``
        (:meth:`RankingPipeline.query`); ``exclude[i]``: ids never returned for it; ``mmr_lambda`` overrides the
        configured MMR (1 turns it off); ``features`` / ``texts``: text and image queries' raw features and texts;
        ``products``: product queries' ids. Offline evaluation scores these lists, so it measures what ``search``
        serves."""
        found = self.retrieve(vectors, self.pipeline.depth(k, mmr_lambda), filter, exclude, features, texts, products)
        return [self.pipeline.rank(ids, scores, self.index.vectors(ids), query, k, mmr_lambda)
                for ids, scores, query in zip(found.ids, found.scores, queries)]

    def retrieve(self, vectors: np.ndarray, depth: int, filter: Filter | None = None,
                 exclude: Sequence[Sequence[str]] | None = None, features: dict | None = None,
                 texts: Sequence[str] | None = None, products: Sequence[str] | None = None) -> SearchResult:
        """The first stage: text and image queries (``features`` given) from the hybrid relevance retrieval when
        the run has one, product queries (``products``) through the co-purchase re-scoring, everything else from
        the graph index."""
        if features is not None and self.hybrid is not None:
            return self.hybrid.search(features, texts, depth, filter, exclude)
        if products is not None and self.copurchase is not None:
            return self.copurchase.search(products, depth, filter, exclude)
        return self.index.search(np.asarray(vectors, np.float32), depth, filter=filter, exclude=exclude)

    def user_history(self, user: str) -> list[str]:
        """A user's interacted product ids, oldest first (empty for an unknown user)."""
        return [i.item for i in sorted((i for i in self.catalog.interactions if i.user == user),
                                       key=lambda i: i.timestamp)]

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

    @staticmethod
    def _capped(k: int, index: VectorIndex, excluded: int = 0) -> int:
        """``k``, or (with a warning) the number of products a query can reach in ``index`` when that is fewer."""
        reachable = max(len(index) - excluded, 1)
        if k > reachable:
            log.warning("k=%d is more than the %d products this query can reach: k capped to %d", k, reachable,
                        reachable)
        return min(k, reachable)

    def _hits(self, ranked: Ranked) -> list[Hit]:
        out = []
        for r, pid in enumerate(ranked.ids):
            p = self.catalog.products[self.catalog.index_of[pid]]
            out.append(Hit(pid, float(ranked.stages["final"][r]), p.title, " > ".join(p.category), p.price,
                           {name: float(v[r]) for name, v in ranked.stages.items()}))
        return out


def category_hint(catalog: Catalog, names: Sequence[str]) -> str | None:
    """For filter category names no product carries (ignoring case): ``no category 'X' (did you mean 'Y'?)``."""
    known = {c.casefold(): c for p in catalog.products for c in p.category}
    missing = [n for n in names if n.casefold() not in known]
    if not missing:
        return None
    close = difflib.get_close_matches(missing[0].casefold(), sorted(known), n=1, cutoff=0.6)
    return f"no category {missing[0]!r}" + (f" (did you mean {known[close[0]]!r}?)" if close else "")


def format_hits(hits: list[Hit], empty: str = "(no results)", explain_scores: bool = False) -> str:
    """One indented line per hit, or ``empty`` when there is none; ``explain_scores`` adds each stage's score."""
    if not hits:
        return f"  {empty}"
    return "\n".join(f"  {r:>2}. {h.score:.3f}  {h.id}  {h.title or '(no title)'}  [{h.category}]"
                     + (f"  ${h.price:.2f}" if h.price is not None else "")
                     + (f"\n        {_stages(h)}" if explain_scores else "") for r, h in enumerate(hits, 1))


def _stages(hit: Hit) -> str:
    return "  ".join(f"{name}={value:.3f}" for name, value in hit.stages.items())
