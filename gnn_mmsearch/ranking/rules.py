"""Rule-based scoring: a weighted sum of min-max normalised features, with hard filters.

Default weights (``conf/ranking/rules.yaml``): retrieval 1.0, graph 0.3, popularity 0.2, rating 0.1, personal 0.5,
price -0.05 (cheaper slightly preferred); any other column of ``FEATURES`` may be weighted. Filters drop
candidates (score ``-inf``): ``min_rating`` and ``max_price`` (products without a rating / price pass).
"""
from __future__ import annotations

import numpy as np

from ._ranker import RANKERS
from .features import FEATURES
from .personalize import minmax

DEFAULT_WEIGHTS = {"retrieval": 1.0, "graph": 0.3, "popularity": 0.2, "rating": 0.1, "personal": 0.5, "price": -0.05}


@RANKERS.register("rules")
class RuleScorer:
    def __init__(self, weights: dict[str, float] | None = None, min_rating: float | None = None,
                 max_price: float | None = None):
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown rule feature(s) {sorted(unknown)}; known: {', '.join(FEATURES)}")
        self.weights, self.min_rating, self.max_price = weights, min_rating, max_price

    def score(self, x: np.ndarray) -> np.ndarray:
        """One score per row of the feature matrix ``x`` (``[C, len(FEATURES)]``)."""
        x = np.asarray(x, np.float32)
        out = np.zeros(len(x), np.float32)
        for name, w in self.weights.items():
            out += w * minmax(x[:, FEATURES.index(name)])
        if self.min_rating is not None:
            rated = x[:, FEATURES.index("rating_missing")] == 0
            out[rated & (x[:, FEATURES.index("rating")] < self.min_rating)] = -np.inf
        if self.max_price is not None:
            priced = x[:, FEATURES.index("price_missing")] == 0
            out[priced & (x[:, FEATURES.index("price")] > np.log1p(self.max_price))] = -np.inf
        return out
