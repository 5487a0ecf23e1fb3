"""Learning to rank: LambdaMART (LightGBM's ``lambdarank``) and RankSVM (a linear SVM on feature differences).

Both fit ``(x [n, F], y [n] graded relevance, groups [Q] candidates per query)``, ``score(x)`` one value per row,
and ``save(dir)`` / ``load_ranker`` (``ranker.json`` + the model), which gives identical scores after reload.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._ranker import RANKERS, save_meta
from .features import FEATURES


def _check(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if x.ndim != 2 or x.shape[1] != len(FEATURES):
        raise ValueError(f"features must be [n, {len(FEATURES)}], got {list(x.shape)}")
    return x


@RANKERS.register("lambdamart")
class LambdaMART:

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_child_samples: int = 20, seed: int = 0, booster=None):
        self.params = dict(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                           min_child_samples=min_child_samples, seed=seed)
        self.booster = booster

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> "LambdaMART":
        import lightgbm as lgb

        model = lgb.LGBMRanker(objective="lambdarank", n_jobs=2, verbose=-1, deterministic=True, **self.params)
        model.fit(_check(x), np.asarray(y, np.int32), group=np.asarray(groups), feature_name=list(FEATURES))
        self.booster = model.booster_
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("LambdaMART is not fitted")
        return self.booster.predict(_check(x), num_threads=1).astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "model.txt"))
        save_meta(self, directory, params=self.params)
        return directory

    @classmethod
    def _load(cls, directory: Path, meta: dict) -> "LambdaMART":
        import lightgbm as lgb

        return cls(**meta["params"], booster=lgb.Booster(model_file=str(directory / "model.txt")))


@RANKERS.register("ranksvm")
class RankSVM:
    """Pairwise ranking (Joachims, 2002): a linear SVM separating ``x_i - x_j`` for pairs of one query with
    ``y_i > y_j``, on standardised features; at most ``max_pairs`` random pairs per query."""

    def __init__(self, C: float = 0.1, max_pairs: int = 200, seed: int = 0):
        self.C, self.max_pairs, self.seed = C, max_pairs, seed
        self.mean = self.std = self.weights = None

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> "RankSVM":
        from sklearn.svm import LinearSVC

        x, y = _check(x), np.asarray(y)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        z = (x - self.mean) / self.std
        rng = np.random.default_rng(self.seed)
        diffs, start = [], 0
        for size in groups:
            gy, gz = y[start:start + size], z[start:start + size]
            start += size
            i, j = np.nonzero(gy[:, None] > gy[None, :])
            if len(i) > self.max_pairs:
                keep = rng.choice(len(i), self.max_pairs, replace=False)
                i, j = i[keep], j[keep]
            diffs.append(gz[i] - gz[j])
        d = np.concatenate(diffs) if diffs else np.empty((0, z.shape[1]), np.float32)
        if len(d) == 0:
            raise ValueError("RankSVM needs at least one query with two different relevance grades")
        flip = rng.random(len(d)) < 0.5  # both classes for the SVM
        d[flip] *= -1
        svm = LinearSVC(C=self.C, fit_intercept=False, random_state=self.seed).fit(d, np.where(flip, -1, 1))
        self.weights = svm.coef_.ravel().astype(np.float32)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("RankSVM is not fitted")
        return ((_check(x) - self.mean) / self.std) @ self.weights

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: getattr(self, k).tolist() for k in ("mean", "std", "weights")}
        save_meta(self, directory, C=self.C, max_pairs=self.max_pairs, seed=self.seed, **state)
        return directory

    @classmethod
    def _load(cls, directory: Path, meta: dict) -> "RankSVM":
        out = cls(meta["C"], meta["max_pairs"], meta["seed"])
        out.mean, out.std, out.weights = (np.asarray(meta[k], np.float32) for k in ("mean", "std", "weights"))
        return out
