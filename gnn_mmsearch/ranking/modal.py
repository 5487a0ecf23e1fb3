"""Raw per-modality features for the ``text_sim`` / ``image_sim`` ranking features, for products and queries.

A run keeps the products' raw features in a folder (``<run>/ranking_features/``): per modality ``<name>.npy`` (float16 unit
rows, catalog order, zeros where missing) and ``<name>_ok.npy`` (bool mask). A modality no product has is not
stored; it then reads as missing for every product, exactly as an all-False mask would. Queries get theirs from
the encoder's own feature extractors (``encoder.query_features``, the pass that also embeds them), so a served
query is described like a training query.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..data.catalog import MODALITIES
from .features import unit_float16

if TYPE_CHECKING:
    from ..features import ProductFeatures

Modal = dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (rows [N, d], ok [N])


def product_modal(feats: ProductFeatures) -> Modal:
    """The raw features of the catalog's products, modalities without any present row left out."""
    out = {"text": (feats.text.numpy(), feats.text_mask.numpy()),
           "image": (feats.image.numpy(), feats.image_mask.numpy())}
    return {name: (rows, ok) for name, (rows, ok) in out.items() if ok.any()}


def save_modal(modal: Modal, directory: str | Path) -> Path:
    """Write ``modal`` (as float16 unit rows) to ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in MODALITIES:
        for path in (directory / f"{name}.npy", directory / f"{name}_ok.npy"):
            path.unlink(missing_ok=True)
    for name, (rows, ok) in modal.items():
        np.save(directory / f"{name}.npy", unit_float16(rows))
        np.save(directory / f"{name}_ok.npy", np.asarray(ok, bool))
    return directory


def load_modal(directory: str | Path, num_products: int) -> Modal:
    """The product features saved in ``directory`` (memory-mapped; empty when there are none)."""
    directory = Path(directory)
    out = {}
    for name in MODALITIES:
        if (directory / f"{name}.npy").exists():
            rows = np.load(directory / f"{name}.npy", mmap_mode="r")
            ok = np.load(directory / f"{name}_ok.npy")
            if len(rows) != num_products or len(ok) != num_products:
                raise ValueError(f"{directory}: {name} features for {len(rows)} products, the catalog has "
                                 f"{num_products}; re-run `gnn-mmsearch run`")
            out[name] = (rows, ok)
    return out


def split_query_features(features: Mapping, modalities: Mapping) -> list[dict[str, np.ndarray]]:
    """Per-query raw features from the ``[Q, d]`` tensors of ``encoder.query_features`` (already computed for the
    query embedding, so serving needs no second extractor pass), for the modalities in ``modalities`` only."""
    kept = {name: np.asarray(rows) for name, rows in features.items() if name in modalities}
    count = max((len(rows) for rows in features.values()), default=0)
    return [{name: rows[q] for name, rows in kept.items()} for q in range(count)]
