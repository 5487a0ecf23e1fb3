"""Term-level late interaction in the relevance head's space: how well a product's words cover a query's words.

    match(q, d) = mean over the query's words w of max(0, max over d's words t of cos(head(w), head(t)))

ColBERT's MaxSim with words as tokens and the relevance head (over raw MiniLM features of each word) as their
encoder. A single query vector and BM25's sum both let a product that matches most of a query ("emerald aluminum
yoga mat" for "emerald leather yoga mat") outrank one that matches all of it; here every named word must find its
counterpart, and the head's learned synonyms ("emerald" ~ "green") and typos count as partial matches. Products
without text score 0. The hybrid retrieval fuses it at a weight chosen on validation queries (``hybrid.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .._atomic import atomic_file
from .expansion import words


class TermMatch:
    """``embed(words) -> [len(words), d]`` word vectors; ``documents``: each product's text, in catalog order.
    Every document word is embedded once here (those in ``path``, a file :meth:`save` wrote, are read from it
    instead), a query's unseen words when it comes (and kept)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], documents: Sequence[str | None],
                 path: str | Path | None = None):
        self.embed, self.row, self.vectors = embed, {}, np.zeros((0, 0), np.float32)
        if path is not None:
            with np.load(path) as saved:
                self._add(saved["words"].tolist(), saved["vectors"])
        terms = [sorted(set(words(d))) for d in documents]
        self._query_vectors(sorted({w for t in terms for w in t}))
        self.doc_terms = [np.array([self.row[w] for w in t], np.int64) for t in terms]

    def save(self, path: str | Path) -> None:
        """Every embedded word and its vector, so a later :class:`TermMatch` embeds none of them again."""
        with atomic_file(path) as f:
            np.savez(f, words=np.array(list(self.row), dtype=str), vectors=self.vectors)

    def scores(self, query: str, rows: Sequence[int]) -> np.ndarray:
        """``match(query, d)`` of the products at catalog ``rows`` (0 for a query without words)."""
        q = self._query_vectors(words(query))
        out = np.zeros(len(rows), np.float32)
        if not len(q):
            return out
        for i, row in enumerate(rows):
            terms = self.doc_terms[row]
            if len(terms):
                out[i] = np.maximum(q @ self.vectors[terms].T, 0.0).max(1).mean()
        return out

    def _query_vectors(self, query_words: list[str]) -> np.ndarray:
        new = sorted({w for w in query_words if w not in self.row})
        if new:
            self._add(new, self.embed(new))
        return self.vectors[[self.row[w] for w in query_words]]

    def _add(self, new: list[str], vectors: np.ndarray) -> None:
        vectors = _unit(vectors)
        self.vectors = np.concatenate([self.vectors, vectors]) if len(self.vectors) else vectors
        self.row.update({w: len(self.row) + i for i, w in enumerate(new)})


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
