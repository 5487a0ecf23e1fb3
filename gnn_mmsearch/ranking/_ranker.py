"""The registry of rankers (the score stage) and loading a saved learned ranker.

A ranker has ``score(x [C, len(FEATURES)]) -> [C]``; a learned one also ``fit(x, y, groups)``, ``save(dir)`` and a
``_load(dir, meta)`` classmethod, and takes the run's ``seed``. Register one with ``@RANKERS.register(name)``; it is
built as ``cls(**ranking.ranker_kwargs)`` (``ranking.ranker: name``).
"""
from __future__ import annotations

import json
from pathlib import Path

from .._registry import Registry
from .features import FEATURES

RANKERS: Registry[type] = Registry("ranker")
META = "ranker.json"


def is_learned(name: str) -> bool:
    return hasattr(RANKERS.get(name), "fit")


def create_ranker(name: str, seed: int = 0, **kwargs):
    """Ranker ``name`` with options ``kwargs`` (a learned one also gets ``seed``)."""
    return RANKERS.create(name, **kwargs, **({"seed": seed} if is_learned(name) else {}))


def save_meta(ranker, directory: Path, **state) -> None:
    """``ranker.json``: the ranker's registered name, the feature list it was trained on and ``state``."""
    (directory / META).write_text(json.dumps({"kind": RANKERS.name_of(ranker), "features": FEATURES, **state}))


def load_ranker(directory: str | Path):
    """A ranker saved with ``save``; its feature list must match this version's :data:`FEATURES`."""
    directory = Path(directory)
    meta = json.loads((directory / META).read_text())
    if tuple(meta.get("features", ())) != FEATURES:
        raise ValueError(f"{directory}: ranker was trained on features {meta.get('features')}, not {FEATURES}")
    return RANKERS.get(meta["kind"])._load(directory, meta)
