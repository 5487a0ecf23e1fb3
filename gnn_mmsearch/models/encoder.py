"""``MultimodalGraphEncoder``: fused image + text product features propagated over the co-purchase graph.

    image feat --proj--\\
                        fusion --> GraphPropagation (GCN x L) --> head --> L2-normalised product embedding
    text  feat --proj--/
    query text / image --proj (shared)--> query tower --> L2-normalised query embedding (same space)

It is a plain ``nn.Module`` over feature tensors (``forward``), with convenience methods over raw products and
queries (``encode_products``, ``encode_query``) that run the pretrained feature extractors named in its config.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.catalog import MODALITIES, Catalog, Edge, Product
from ..layers import FUSIONS, GraphPropagation
from ._pretrained import Pretrained

log = logging.getLogger(__name__)


@dataclass
class EncoderConfig:
    image_dim: int = 1280
    text_dim: int = 384
    hidden_dim: int = 256
    out_dim: int = 128
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    fusion: str = "attention"             # a name in layers.FUSIONS
    fusion_kwargs: dict = field(default_factory=dict)
    gnn_layers: int = 2
    conv: str = "lightgcn"                # a name in layers.CONVS
    conv_kwargs: dict = field(default_factory=dict)
    dropout: float = 0.1
    graph_edge_types: list[str] = field(default_factory=lambda: ["also_buy", "bought_together"])
    features: dict = field(default_factory=dict)  # feature-extractor config: {"image": {...}, "text": {...}}

    def __post_init__(self):
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")


def _projection(in_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU(), nn.Dropout(dropout))


def _tower(hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))


FUSE_ROWS = 65536  # inference: products projected and fused at a time (see forward)


class MultimodalGraphEncoder(Pretrained, nn.Module):
    config_class = EncoderConfig

    def __init__(self, config: EncoderConfig | None = None, **kwargs):
        super().__init__()
        self.config = config or EncoderConfig(**kwargs)
        c = self.config
        self.proj = nn.ModuleDict({"image": _projection(c.image_dim, c.hidden_dim, c.dropout),
                                   "text": _projection(c.text_dim, c.hidden_dim, c.dropout)})
        self.fusion = FUSIONS.create(c.fusion, len(MODALITIES), c.hidden_dim, **c.fusion_kwargs)
        self.gnn = GraphPropagation(c.hidden_dim, c.gnn_layers, c.conv, c.dropout, conv_kwargs=c.conv_kwargs)
        self.head = nn.Linear(c.hidden_dim, c.out_dim)
        self.query_towers = nn.ModuleDict({m: _tower(c.hidden_dim, c.out_dim) for m in MODALITIES})
        # which modalities the model reads, where its parameters are (no host-to-device copy per forward)
        self.register_buffer("enabled", torch.tensor([m in c.modalities for m in MODALITIES]), persistent=False)
        self._extractors: dict = {}

    # ------------------------------------------------------------------ tensors in, embeddings out
    def forward(self, image: torch.Tensor, image_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                edge_index: torch.Tensor | None = None) -> torch.Tensor:
        """Product embeddings ``[N, out_dim]`` (unit norm) from features, masks and an (undirected) edge index.
        Without gradients, more than ``FUSE_ROWS`` products are projected and fused a block of rows at a time
        (bounded memory on large catalogs); only the graph propagation sees them all at once."""
        n = image.size(0)
        if torch.is_grad_enabled() or n <= FUSE_ROWS:
            h = self._fuse(image, image_mask, text, text_mask)
        else:
            blocks, weights = [], []
            for rows in (slice(s, s + FUSE_ROWS) for s in range(0, n, FUSE_ROWS)):
                blocks.append(self._fuse(image[rows], image_mask[rows], text[rows], text_mask[rows]))
                weights.append(self.fusion.last_weights)
            h = torch.cat(blocks)
            self.fusion.last_weights = torch.cat(weights) if all(w is not None for w in weights) else None
        if edge_index is None:
            edge_index = torch.empty(2, 0, dtype=torch.long, device=h.device)
        h = self.gnn(h, edge_index)
        return F.normalize(self.head(h), dim=-1)

    def _fuse(self, image: torch.Tensor, image_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
              ) -> torch.Tensor:
        """Per-product vectors ``[N, hidden]`` before propagation. A modality none of these products has is not
        projected (the fusion ignores masked tokens: zeros stand in)."""
        tokens = torch.stack([self.proj[m](x) if present.any() else x.new_zeros(x.size(0), self.config.hidden_dim)
                              for m, x, present in (("image", image, image_mask), ("text", text, text_mask))], dim=1)
        return self.fusion(tokens, torch.stack([image_mask, text_mask], dim=1) & self.enabled)

    def embed_query_features(self, text: torch.Tensor | None = None, image: torch.Tensor | None = None) -> torch.Tensor:
        """Query embeddings ``[Q, out_dim]`` from text and/or image features (both given: their normalised sum)."""
        parts = [F.normalize(self.query_towers[m](self.proj[m](x)), dim=-1)
                 for m, x in (("text", text), ("image", image)) if x is not None]
        if not parts:
            raise ValueError("a query needs text and/or image features")
        return F.normalize(torch.stack(parts).sum(0), dim=-1)

    # ------------------------------------------------------------------ raw products and queries
    def feature_extractor(self, modality: str):
        """The pretrained image or text feature extractor named in ``config.features`` (built on first use)."""
        from ..features import build_image_encoder, build_text_encoder

        if modality not in self._extractors:
            build = build_image_encoder if modality == "image" else build_text_encoder
            self._extractors[modality] = build(self.config.features)
        return self._extractors[modality]

    def set_feature_extractors(self, image=None, text=None) -> None:
        """Reuse already-built extractors (they must match ``config.features``)."""
        self._extractors.update({k: v for k, v in (("image", image), ("text", text)) if v is not None})

    @torch.inference_mode()
    def encode_products(self, products: Catalog | Sequence[Product], edges: Iterable[Edge] = (),
                        root: str | Path | None = None, cache_dir: str | Path | None = None) -> torch.Tensor:
        """Embed products, seen in training or not (inductive): features are extracted, then propagated over
        ``edges`` (ids among ``products``; a Catalog brings its own). No edges = cold start, content only.
        Relative image paths are resolved against ``root`` (a Catalog brings its own)."""
        from ..features import extract_features

        catalog = products if isinstance(products, Catalog) else Catalog(list(products), edges, root=root)
        feats = extract_features(catalog, self.feature_extractor("image"), self.feature_extractor("text"), cache_dir)
        was_training = self.training
        self.eval()
        emb = self(feats.image, feats.image_mask, feats.text, feats.text_mask,
                   catalog.to_pyg(self.config.graph_edge_types).edge_index)
        self.train(was_training)
        return emb

    @torch.inference_mode()
    def encode_query(self, text: str | Sequence[str] | None = None,
                     image: str | Path | Sequence[str | Path] | None = None,
                     video: str | Path | Sequence[str | Path] | None = None) -> torch.Tensor:
        """Embed text and/or image or video queries (file paths) into the product space: ``[Q, out_dim]``."""
        return self.embed_queries(self.query_features(text, image, video))

    def query_features(self, text: str | Sequence[str] | None = None,
                       image: str | Path | Sequence[str | Path] | None = None,
                       video: str | Path | Sequence[str | Path] | None = None,
                       frames: int | None = None) -> dict[str, torch.Tensor]:
        """The queries' raw pretrained features, ``{"text": [Q, 384], "image": [Q, 1280]}`` for what is given; a
        ``video`` gives the mean image features of its keyframes (``frames``, default ``VIDEO_FRAMES``, spread over
        the clip: ``features/video.py``), in place of an image. Bad
        input (an empty text, an unreadable image or video, mismatched counts) raises ``ValueError``."""
        if image is not None and video is not None:
            raise ValueError("give an image or a video, not both")
        texts = [text] if isinstance(text, str) else list(text) if text is not None else None
        images = [image] if isinstance(image, (str, Path)) else list(image) if image is not None else None
        videos = [video] if isinstance(video, (str, Path)) else list(video) if video is not None else None
        if texts is not None and any(not t or not t.strip() for t in texts):
            raise ValueError("empty text query: give some words to search for")
        if not texts and not images and not videos:
            raise ValueError("empty query: give text and/or an image or a video")
        visual = images or videos
        if texts and visual and len(texts) != len(visual):
            raise ValueError(f"{len(texts)} text queries but {len(visual)} image or video queries")
        features = {}
        if texts:
            extractor = self.feature_extractor("text")
            for t, n in zip(texts, extractor.token_counts(texts)):
                if n > extractor.max_tokens:
                    log.warning("query truncated to the text encoder's %d tokens (it has %d): %.60s...",
                                extractor.max_tokens, n, t)
            vecs, _ = extractor.encode(texts, progress=False)
            features["text"] = torch.as_tensor(vecs)
        if images:
            vecs, ok = self.feature_extractor("image").encode([Path(p) for p in images], progress=False)
            if not ok.all():
                bad = [str(p) for p, good in zip(images, ok) if not good]
                raise ValueError(f"cannot read query image(s): {', '.join(bad)}")
            features["image"] = torch.as_tensor(vecs)
        if videos:
            from ..features.video import keyframes

            clips = [keyframes(v, frames) for v in videos]
            extractor = self.feature_extractor("image")
            features["image"] = torch.as_tensor(np.stack([extractor.encode_images(c).mean(0) for c in clips]))
        return features

    def embed_queries(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`embed_query_features` in eval mode, for features from :meth:`query_features`."""
        was_training = self.training
        self.eval()
        out = self.embed_query_features(**features)
        self.train(was_training)
        return out
