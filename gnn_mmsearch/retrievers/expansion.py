"""Image-grounded document expansion: the words a product's image shows that its text lacks, indexed for BM25
as a second field of its document (doc2query's idea with the product photo as the source).

A multi-label logistic regression on the raw image features predicts, for each word of a vocabulary (the words in
at least ``min_count`` training products' texts, BM25's stopwords left out), whether a product's own text holds it.
It is self-supervised and fitted on training products only (their own words are the labels), then applied to every
product with an image: a product's expansion is its ``top_k`` most probable words at or above ``min_prob`` that its
text lacks. Words an image shows with several names in the catalog's texts (a colour's synonyms) are predicted
together, so a "crimson" product also gets "red" and "scarlet"; a product without text gets words at all.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

TOKEN = re.compile(r"(?u)\b\w\w+\b")  # words of 2+ characters: one letter or digit is nothing a photo or a word vector shows


def words(text: str | None) -> list[str]:
    """Lower-cased words of ``text`` (2+ characters) without BM25's stopwords, in order (repeats kept)."""
    from bm25s.stopwords import STOPWORDS_EN

    return [w for w in TOKEN.findall((text or "").lower()) if w not in STOPWORDS_EN]


@dataclass
class ExpansionConfig:
    """``relevance.expansion``; BM25's weight of the added words is chosen on validation queries from
    ``relevance.expansion_weights``."""

    enabled: bool = True
    top_k: int = 10           # at most this many words added per product
    min_prob: float = 0.05    # ... each predicted at this probability or above
    min_count: int = 10       # vocabulary: words in at least this many training products' texts
    l2: float = 1e-2          # the logistic regression's weight decay

    def __post_init__(self):
        if self.top_k < 1 or self.min_count < 1:
            raise ValueError(f"relevance.expansion.top_k and min_count must be >= 1, got {self.top_k}, "
                             f"{self.min_count}")
        if not 0 < self.min_prob <= 1:
            raise ValueError(f"relevance.expansion.min_prob must be in (0, 1], got {self.min_prob}")
        if self.l2 < 0:
            raise ValueError(f"relevance.expansion.l2 must be >= 0, got {self.l2}")


class ImageWords:
    """The fitted word predictor: ``vocab`` and each product's probability of every word, ``probs [N, V]`` (rows
    of products without an image: 0)."""

    def __init__(self, vocab: list[str], probs: np.ndarray, doc_words: list[set[str]]):
        self.vocab, self.probs, self.doc_words = vocab, probs, doc_words

    @classmethod
    def fit(cls, texts: Sequence[str | None], images: torch.Tensor, image_mask: torch.Tensor,
            train_rows: Sequence[int], min_count: int = 10, l2: float = 1e-2, steps: int = 200) -> "ImageWords":
        """Fit on the ``train_rows`` with an image and a text (``texts``: each product's document, in catalog
        order), predict for every product with an image."""
        doc_words = [set(words(t)) for t in texts]
        train = [int(i) for i in train_rows if image_mask[int(i)] and doc_words[int(i)]]
        counts = Counter(w for i in train for w in doc_words[i])
        vocab = sorted(w for w, c in counts.items() if c >= min_count)
        probs = np.zeros((len(texts), len(vocab)), np.float32)
        if not vocab or not train:
            return cls(vocab, probs, doc_words)
        index = {w: j for j, w in enumerate(vocab)}
        y = torch.zeros(len(train), len(vocab))
        for r, i in enumerate(train):
            y[r, [index[w] for w in doc_words[i] if w in index]] = 1.0
        x = images.float()
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        x = (x - mean) / std
        layer = torch.nn.Linear(x.size(1), len(vocab))
        with torch.no_grad():  # start at every word's base rate
            layer.weight.zero_()
            layer.bias.copy_(torch.logit(y.mean(0).clamp(1e-4, 1 - 1e-4)))
        opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
        xt = x[train]

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(layer(xt), y, reduction="sum") / len(train) \
                + l2 * layer.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            has = image_mask.bool().numpy()
            probs[has] = torch.sigmoid(layer(x[image_mask.bool()])).numpy()
        return cls(vocab, probs, doc_words)

    def expansions(self, top_k: int, min_prob: float) -> list[list[str]]:
        """Each product's ``top_k`` most probable words at or above ``min_prob`` that its text lacks, most
        probable first."""
        out = []
        for row, have in zip(self.probs, self.doc_words):
            order = np.argsort(-row, kind="stable")
            picked = []
            for j in order:
                if row[j] < min_prob or len(picked) == top_k:
                    break
                if self.vocab[j] not in have:
                    picked.append(self.vocab[j])
            out.append(picked)
        return out
