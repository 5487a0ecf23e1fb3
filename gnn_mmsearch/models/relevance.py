"""``RelevanceEncoder``: the content-only dual encoder that serves text and image queries (relevance), beside the
graph encoder that serves product queries (complements).

    product text  --text tower--\\
                                 normalised sum --> product relevance embedding (no graph propagation)
    product image --image tower-/
    query text / image --the same towers--> query embedding

Each tower is residual over the unit-normalised pretrained feature, ``x W + MLP(x)``, so the raw content survives
while training learns the text <-> image alignment. With ``categories`` (the catalog's product types), a linear
query classifier over the raw query text predicts which type a query asks for ("striped watch": a watch, not a
watch band), which serving adds to the candidates' scores. The graph space pulls a product towards what is bought with it
(a phone beside its cases); a search query wants what it names, so the two are kept apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._pretrained import Pretrained


@dataclass
class RelevanceConfig:
    image_dim: int = 1280
    text_dim: int = 384
    hidden_dim: int = 512
    out_dim: int = 256
    dropout: float = 0.1
    categories: list[str] = field(default_factory=list)  # product types the query classifier predicts (>= 2)


def product_type(product) -> str:
    """What the query classifier predicts for a product: its category path."""
    return " > ".join(product.category)


class ResidualTower(nn.Module):
    """``normalize(x) W + MLP(normalize(x))``, L2-normalised."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1)
        return F.normalize(self.linear(x) + self.mlp(x), dim=-1)


class RelevanceEncoder(Pretrained, nn.Module):
    config_class = RelevanceConfig

    def __init__(self, config: RelevanceConfig | None = None, **kwargs):
        super().__init__()
        self.config = c = config or RelevanceConfig(**kwargs)
        self.towers = nn.ModuleDict({"image": ResidualTower(c.image_dim, c.hidden_dim, c.out_dim, c.dropout),
                                     "text": ResidualTower(c.text_dim, c.hidden_dim, c.out_dim, c.dropout)})
        self.classifier = nn.Linear(c.text_dim, len(c.categories)) if len(c.categories) > 1 else None

    def forward(self, image: torch.Tensor, image_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        """Product embeddings ``[N, out_dim]``: the normalised sum of the towers of the modalities a product has
        (zero for a product with neither)."""
        return F.normalize(self.towers["image"](image) * image_mask[:, None]
                           + self.towers["text"](text) * text_mask[:, None], dim=-1)

    def embed_query_features(self, text: torch.Tensor | None = None, image: torch.Tensor | None = None) -> torch.Tensor:
        """Query embeddings ``[Q, out_dim]`` from raw text and/or image features (both: their normalised sum)."""
        parts = [self.towers[m](x) for m, x in (("text", text), ("image", image)) if x is not None]
        if not parts:
            raise ValueError("a query needs text and/or image features")
        return F.normalize(torch.stack(parts).sum(0), dim=-1)

    def category_logits(self, text: torch.Tensor) -> torch.Tensor:
        """Which of ``config.categories`` raw query text features ``[Q, text_dim]`` ask for, as logits ``[Q, C]``."""
        if self.classifier is None:
            raise ValueError("this relevance head has no query classifier (fewer than two categories)")
        return self.classifier(F.normalize(text, dim=-1))
