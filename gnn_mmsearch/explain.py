"""Why did a product come up for a query? Modality attribution and neighbour contributions, as text and a PNG.

    ex = explain("runs/2026-11-24_03-48-27", query="red leather wallet", product_id="P00045")
    print(ex.to_text()); ex.plot("why.png")

Both are occlusions, measured on the query-result score the index serves (one forward pass each):

- **Modalities**: a modality is masked out for every product (the model's own notion of a missing image or text,
  not a zero vector) and the score change measured; ``modality_weights`` are the absolute shares (sum 1),
  ``modality_effects`` the same shares with the sign of the change (negative: the modality lowered the score).
  With ``weighted`` or ``attention`` fusion the fusion's own weights for the result are reported as well.
- **Neighbours**: each direct link of the result is removed in turn and the catalog re-embedded:
  ``contribution = score - score without that link`` (positive: the link helped).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._atomic import atomic_file
from .data.catalog import MODALITIES
from .features import ProductFeatures, extract_features
from .run_dir import RunDir
from .search import Searcher


@dataclass
class Neighbour:
    id: str
    title: str | None
    image: Path | None
    contribution: float  # query-result score minus the score without this neighbour's link


@dataclass
class Explanation:
    query: str  # the query as given: text, "image <path>" or "product <id>"
    product_id: str
    title: str | None
    image: Path | None
    score: float  # cosine similarity of query and result, as the index serves it
    content_score: float  # the same score with no graph links at all
    modality_attribution: dict[str, float]  # score minus the score with the modality masked out
    fusion_weights: dict[str, float] | None  # the fusion's weights for the result (None for concat)
    neighbours: list[Neighbour] = field(default_factory=list)  # largest |contribution| first, the top k
    query_image: Path | None = None
    links: int = 0  # the result's direct links in the graph the model propagates over (0 without graph layers)

    @property
    def modality_weights(self) -> dict[str, float]:
        """Share of each modality in the attribution (absolute values, summing to 1)."""
        total = sum(abs(v) for v in self.modality_attribution.values())
        if total == 0:
            return {m: 1 / len(self.modality_attribution) for m in self.modality_attribution}
        return {m: abs(v) / total for m, v in self.modality_attribution.items()}

    @property
    def modality_effects(self) -> dict[str, float]:
        """:attr:`modality_weights` with the sign of each modality's contribution."""
        return {m: w if self.modality_attribution[m] >= 0 else -w for m, w in self.modality_weights.items()}

    @property
    def graph_contribution(self) -> float:
        return self.score - self.content_score

    def to_text(self) -> str:
        lines = [f"query: {self.query}", f"result: {self.product_id}  {self.title or '(no title)'}",
                 f"score: {self.score:.4f} (content only, no graph: {self.content_score:.4f}, "
                 f"graph {self.graph_contribution:+.4f})", "modalities (share; contribution = score minus score with it masked out):"]
        lines += [f"  {m:<6} {w:+7.1%}  ({self.modality_attribution[m]:+.4f})" for m, w in self.modality_effects.items()]
        if self.fusion_weights:
            lines.append("fusion weights: " + ", ".join(f"{m} {w:.1%}" for m, w in self.fusion_weights.items()))
        if self.neighbours:
            lines.append(f"neighbours ({len(self.neighbours)} of {_links(self.links)}; contribution = score minus "
                         "score without the link):")
            lines += [f"  {n.contribution:+.4f}  {n.id}  {n.title or '(no title)'}" for n in self.neighbours]
        elif self.links:
            lines.append(f"neighbours: {_links(self.links)}, none shown (k=0)")
        else:
            lines.append("neighbours: none (no links, or a model without graph layers)")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """A PNG: the query, the result's image, modality shares, the top neighbours' images and contributions."""
        return _plot(self, Path(path))


def explain(source: str | Path | Searcher, query: str | None = None, product_id: str | None = None,
            image: str | Path | None = None, product: str | None = None, k: int = 5,
            features: ProductFeatures | None = None) -> Explanation:
    """Explain why ``product_id`` (default: the top hit) scores as it does for a text and/or image query, or for
    another ``product``.

    ``source`` is a run directory or a :class:`Searcher`; the catalog's features come from
    :func:`catalog_features` (pass ``features`` to reuse ones already loaded). The ``k`` neighbours with the largest
    effect are kept (``k=0``: none is measured, the links are only counted).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    searcher = source if isinstance(source, Searcher) else Searcher.from_run(source)
    model, catalog = searcher.encoder, searcher.catalog
    if product_id is None:
        hits = searcher.search(text=query, image=image, product=product, k=1)
        if not hits:
            raise ValueError("the query has no results to explain")
        product_id = hits[0].id
    if product_id not in catalog.index_of:
        raise KeyError(f"unknown product id {product_id!r}")
    if features is None:
        features = catalog_features(searcher)
    if product is not None:
        if product not in searcher.index:
            raise KeyError(f"unknown product id {product!r}")
        q = torch.as_tensor(searcher.index.vectors([product]))[0]
        described, query_image = f"product {product}", catalog.image_file(catalog.products[catalog.index_of[product]])
    else:
        q = model.encode_query(text=query, image=image)[0]
        described = " + ".join(x for x in (query, image and f"image {image}") if x)
        query_image = Path(image) if image is not None else None
    row = catalog.index_of[product_id]
    edges = catalog.to_pyg(model.config.graph_edge_types).edge_index
    was_training = model.training
    model.eval()

    def score_with(edge_index: torch.Tensor, without: str | None = None) -> float:
        masks = {m: getattr(features, f"{m}_mask") & (m != without) for m in MODALITIES}
        with torch.no_grad():
            return float(model(features.image, masks["image"], features.text, masks["text"], edge_index)[row] @ q)

    score = score_with(edges)
    weights = model.fusion.last_weights[row].tolist() if model.config.fusion != "concat" else None
    attribution = {m: score - score_with(edges, without=m) for m in model.config.modalities}
    linked_rows = edges[1][edges[0] == row].unique().tolist() if model.config.gnn_layers else []
    neighbours = []
    if k > 0:
        linked = (edges[0] == row) | (edges[1] == row)
        for j in linked_rows:
            keep = ~(linked & ((edges[0] == j) | (edges[1] == j)))
            p = catalog.products[j]
            neighbours.append(Neighbour(p.id, p.title, catalog.image_file(p), score - score_with(edges[:, keep])))
        neighbours.sort(key=lambda n: -abs(n.contribution))
    model.train(was_training)

    p = catalog.products[row]
    return Explanation(described, product_id, p.title, catalog.image_file(p), score,
                       score_with(edges[:, :0]), attribution, dict(zip(MODALITIES, weights)) if weights else None,
                       neighbours[:k], query_image, len(linked_rows))


def catalog_features(searcher: Searcher) -> ProductFeatures:
    """Every product's raw image and text features, from the run's feature cache when ``searcher`` came from a run."""
    model = searcher.encoder
    cache = RunDir(searcher.run_dir).feature_cache() if searcher.run_dir is not None else None
    return extract_features(searcher.catalog, model.feature_extractor("image"), model.feature_extractor("text"), cache)


# ------------------------------------------------------------------------------------------------ picture
def _plot(ex: Explanation, path: Path) -> Path:
    from matplotlib.figure import Figure

    cols = max(4, len(ex.neighbours))
    heights = [1.15, 1, 0.9] if ex.neighbours else [1.15, 0.15]
    fig = Figure(figsize=(2.6 * cols, 2.9 * sum(heights)), layout="constrained")
    grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)

    ax = fig.add_subplot(grid[0, 0])
    if ex.query_image is not None:
        _show_image(ax, ex.query_image, f"query: {ex.query}")
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, _wrap(ex.query, 22), ha="center", va="center", fontsize=12, wrap=True,
                bbox={"boxstyle": "round", "facecolor": "#eef3fb", "edgecolor": "#8aa"})
        ax.set_title("query")
    _show_image(fig.add_subplot(grid[0, 1]), ex.image,
                f"result {ex.product_id}: {_wrap(ex.title or '(no title)', 30)}\nscore {ex.score:.3f} "
                f"(content only {ex.content_score:.3f})")

    ax = fig.add_subplot(grid[0, 2:])
    names = list(ex.modality_effects)
    bars = {"occlusion share (signed)": [ex.modality_effects[m] for m in names]}
    if ex.fusion_weights:
        bars["fusion weight"] = [ex.fusion_weights[m] for m in names]
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars.items()):
        pos = [y + (i - (len(bars) - 1) / 2) * width for y in range(len(names))]
        ax.barh(pos, values, width, label=label)
        for y, v in zip(pos, values):
            ax.text(v + (0.01 if v >= 0 else -0.01), y, f"{v:+.0%}" if i == 0 else f"{v:.0%}", va="center",
                    ha="left" if v >= 0 else "right", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(-1.25 if min(ex.modality_effects.values()) < 0 else 0, 1.25)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("which modality mattered")
    ax.set_xlabel("share of the score change when masked out (< 0: it lowered the score)")

    for i, n in enumerate(ex.neighbours):
        _show_image(fig.add_subplot(grid[1, i]), n.image, f"{n.id}  {n.contribution:+.3f}\n{_wrap(n.title or '', 26)}")
    ax = fig.add_subplot(grid[-1, :])
    if ex.neighbours:
        values = [n.contribution for n in ex.neighbours]
        ax.bar(range(len(values)), values, 0.5, color=["#2a9d8f" if v >= 0 else "#e76f51" for v in values])
        ax.set_xticks(range(len(values)), [n.id for n in ex.neighbours])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("score change")
        ax.set_xlim(-0.5, cols - 0.5)  # each bar under its neighbour's image
        ax.set_title(f"neighbour contribution: score minus score without the link "
                     f"(all links together: {ex.graph_contribution:+.3f})")
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"{_links(ex.links)}, none shown (k=0)" if ex.links else
                "no graph neighbours: the result has no links, or the model no graph layers", ha="center", va="center")
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)
    return path


def _show_image(ax, image: Path | None, title: str) -> None:
    from PIL import Image

    ax.set_xticks([])
    ax.set_yticks([])
    try:
        if image is None:
            raise FileNotFoundError
        with Image.open(image) as img:
            ax.imshow(img.convert("RGB"))
    except OSError:  # no image, a missing file or an unreadable one: a placeholder
        ax.set_facecolor("#dddddd")
        ax.text(0.5, 0.5, "no image", ha="center", va="center", color="#666666", transform=ax.transAxes)
    ax.set_title(title, fontsize=9)


def _links(n: int) -> str:
    return f"{n} link" if n == 1 else f"{n} links"


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width)[:3])
