"""Per-product image and text features, extracted once and cached on disk by content."""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.catalog import Catalog
from ..device import resolve_device
from .cache import FeatureCache, file_key, text_key
from .image import ImageEncoder
from .text import TextEncoder

__all__ = [
    "FeatureCache",
    "ImageEncoder",
    "ProductFeatures",
    "TextEncoder",
    "build_image_encoder",
    "build_text_encoder",
    "extract_features",
]

log = logging.getLogger(__name__)

Encode = Callable[..., tuple[np.ndarray, np.ndarray]]
PROGRESS_EVERY_S = 60.0


@dataclass
class ProductFeatures:
    """Features aligned with ``catalog.products``; a False mask entry means "no feature" (row is zeros)."""

    image: torch.Tensor  # float32 [N, di]
    image_mask: torch.Tensor  # bool [N]
    text: torch.Tensor  # float32 [N, dt]
    text_mask: torch.Tensor  # bool [N]
    stats: dict[str, int] = field(default_factory=dict)

    def to(self, device: str | torch.device) -> "ProductFeatures":
        """The same features with every tensor on ``device``."""
        return replace(self, **{name: getattr(self, name).to(device)
                                for name in ("image", "image_mask", "text", "text_mask")})


def build_image_encoder(cfg: Mapping) -> ImageEncoder:
    """``ImageEncoder`` from ``cfg.image.{model_name, checkpoint, batch_size}``, ``cfg.device`` (default ``auto``)
    and ``cfg.precision``."""
    return ImageEncoder(**_kwargs(cfg.get("image"), ("model_name", "checkpoint", "batch_size")), **_placement(cfg))


def build_text_encoder(cfg: Mapping) -> TextEncoder:
    """``TextEncoder`` from ``cfg.text.{model_name, batch_size}``, ``cfg.device`` and ``cfg.precision``."""
    return TextEncoder(**_kwargs(cfg.get("text"), ("model_name", "batch_size")), **_placement(cfg))


def _placement(cfg: Mapping) -> dict:
    return {"device": resolve_device(cfg.get("device") or "auto", "encoder.device"),
            "precision": cfg.get("precision") or "fp32"}


def _kwargs(section: Mapping | None, names: Sequence[str]) -> dict:
    section = section or {}
    return {name: section.get(name) for name in names if section.get(name) is not None}


def extract_features(
    catalog: Catalog,
    image_encoder: ImageEncoder,
    text_encoder: TextEncoder,
    cache_dir: str | Path | None,
    chunk_size: int = 512,
) -> ProductFeatures:
    """Image and text features of every product, reusing ``cache_dir`` and extracting only what is missing.

    Extracted vectors are stored every ``chunk_size`` items, so an interrupted run resumes where it stopped.
    ``cache_dir=None`` extracts everything and keeps nothing.
    """
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="gnn-mmsearch-features-") as tmp:
            return extract_features(catalog, image_encoder, text_encoder, tmp, chunk_size)
    image_keys, image_inputs, image_missing, hash_failed = _image_keys(catalog)
    if image_inputs:
        image, image_ok, image_found = _cached_encode(
            image_keys, image_inputs, image_encoder.encode, FeatureCache(cache_dir, image_encoder.config()),
            chunk_size, "image features")
        image = torch.from_numpy(image)
    else:  # no image at all (e.g. data.missing_image_rate=1): one zero row stands for every product, not N of them
        image = torch.zeros(1, image_encoder.dim).expand(len(image_keys), -1)
        image_ok = image_found = np.zeros(len(image_keys), dtype=bool)
    has_key = np.array([k is not None for k in image_keys], dtype=bool)

    texts = [p.text() for p in catalog.products]
    text_keys = [text_key(t) if t and t.strip() else None for t in texts]
    text, text_ok, text_found = _cached_encode(
        text_keys, {k: t for k, t in zip(text_keys, texts) if k is not None}, text_encoder.encode,
        FeatureCache(cache_dir, text_encoder.config()), chunk_size, "text features")

    stats = {
        "image_reused": int((image_found & image_ok).sum()),
        "image_extracted": int((~image_found & image_ok).sum()),
        "image_missing": image_missing,
        "image_unreadable": int((has_key & ~image_ok).sum()) + hash_failed,
        "text_reused": int((text_found & text_ok).sum()),
        "text_extracted": int((~text_found & text_ok).sum()),
        "text_missing": sum(k is None for k in text_keys),
    }
    log.info("image features: %d reused from cache, %d extracted, %d missing, %d unreadable",
             stats["image_reused"], stats["image_extracted"], stats["image_missing"], stats["image_unreadable"])
    log.info("text features: %d reused from cache, %d extracted, %d missing",
             stats["text_reused"], stats["text_extracted"], stats["text_missing"])
    return ProductFeatures(
        image=image, image_mask=torch.from_numpy(image_ok),
        text=torch.from_numpy(text), text_mask=torch.from_numpy(text_ok), stats=stats,
    )


def _image_keys(catalog: Catalog) -> tuple[list[str | None], dict[str, Path], int, int]:
    """Per-product content keys, key -> file, and counts of missing files and files that could not be read."""
    keys: list[str | None] = []
    files: dict[str, Path] = {}
    missing = failed = 0
    for product in catalog.products:
        path = catalog.image_file(product)
        key = None
        if path is None or not path.is_file():
            missing += 1
        else:
            try:
                key = file_key(path)
                files.setdefault(key, path)
            except OSError as err:
                failed += 1
                log.warning("cannot read image %s: %s", path, err)
        keys.append(key)
    return keys, files, missing, failed


def _cached_encode(
    keys: Sequence[str | None],
    inputs: Mapping[str, object],
    encode: Encode,
    cache: FeatureCache,
    chunk_size: int,
    desc: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vectors [N, dim], ok [N], found_in_cache [N])`` for per-row keys (``None``: no input, not ok). Long
    extractions also log their progress every ``PROGRESS_EVERY_S`` (the bar is off without a terminal)."""
    unique = list(inputs)
    vectors, found, ok = cache.lookup(unique)
    todo = np.flatnonzero(~found)
    started = last = time.monotonic()
    with tqdm(total=len(todo), desc=desc, unit="item", disable=None) as bar:
        for start in range(0, len(todo), chunk_size):
            idx = todo[start:start + chunk_size]
            chunk_keys = [unique[j] for j in idx]
            vectors[idx], ok[idx] = encode([inputs[k] for k in chunk_keys], progress=False)
            cache.store(chunk_keys, vectors[idx], ok[idx])
            bar.update(len(idx))
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                last, done = time.monotonic(), start + len(idx)
                log.info("%s: %d/%d extracted (%.0f/s)", desc, done, len(todo), done / (last - started))
    # a zero, not-ok, not-found sentinel row at index -1 serves the rows without a key
    position = {key: j for j, key in enumerate(unique)}
    rows = np.array([-1 if k is None else position[k] for k in keys], dtype=np.int64)
    vectors = np.concatenate([vectors, np.zeros((1, cache.dim), dtype=np.float32)])
    return vectors[rows], np.append(ok, False)[rows], np.append(found, False)[rows]
