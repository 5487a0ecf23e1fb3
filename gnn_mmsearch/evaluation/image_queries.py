"""Image queries: a held-out product's photo, re-cropped and colour-jittered (deterministic by seed), must find that
product (``image_query/*``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance

from ..data.catalog import Catalog


def augment(img: Image.Image, rng: np.random.Generator, scale=(0.6, 0.9), ratio=(0.8, 1.25),
            jitter: float = 0.2, hue: float = 0.02) -> Image.Image:
    """A random resized crop (``scale`` of the area, aspect in ``ratio``), then brightness, contrast and saturation
    times U(1 +- ``jitter``) and a hue shift of at most ``hue`` of the colour wheel."""
    img = img.convert("RGB")
    w, h = img.size
    area, aspect = w * h * rng.uniform(*scale), np.exp(rng.uniform(*np.log(ratio)))
    cw, ch = min(w, int(round(np.sqrt(area * aspect)))), min(h, int(round(np.sqrt(area / aspect))))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(float(rng.uniform(1 - jitter, 1 + jitter)))
    hsv = np.asarray(img.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(rng.uniform(-hue, hue) * 255))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def image_queries(catalog: Catalog, rows: Sequence[int], out_dir: str | Path, seed: int) -> tuple[list[Path], list[int]]:
    """Augmented copies of the images of the products at ``rows`` that have one, written to ``out_dir``: the query
    files and their target rows. Product ``i``'s augmentation depends on ``(seed, i)`` only."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, targets = [], []
    for i in map(int, rows):
        src = catalog.image_file(catalog.products[i])
        if src is None or not src.is_file():
            continue
        with Image.open(src) as img:
            query = augment(img, np.random.default_rng([seed, i]))
        paths.append(out_dir / f"query_{i}.png")
        query.save(paths[-1])
        targets.append(i)
    return paths, targets
