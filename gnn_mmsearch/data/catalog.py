"""Catalog data model: products, typed co-purchase edges and user interactions.

On-disk format (a directory)::

    catalog.json        {"name", "format_version", "edge_types", "meta": {...}}
    products.jsonl      one Product per line (fields below; image_path relative to the directory)
    edges.tsv           src_id<TAB>dst_id<TAB>type       (header line; undirected co-purchase links)
    interactions.tsv    user<TAB>item_id<TAB>timestamp<TAB>rating   (header line; optional)
    images/             product images referenced by products.jsonl
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
EDGE_TYPES = ("also_buy", "also_view", "bought_together")
MODALITIES = ("image", "text")  # what a product can carry besides its fields; models keep this order


@dataclass
class Product:
    """One product. Every field but ``id`` may be missing (``None`` / empty)."""

    id: str
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    category: list[str] = field(default_factory=list)
    price: float | None = None
    rating: float | None = None
    popularity: float | None = None
    image_path: str | None = None

    def text(self) -> str | None:
        """The text the text encoder sees, or ``None`` when the product has no text at all."""
        parts = [self.title, self.brand, " > ".join(self.category) if self.category else None, self.description]
        parts = [p.strip() for p in parts if p and p.strip()]
        if not (self.title or self.description):
            return None
        return ". ".join(parts)

    @classmethod
    def from_dict(cls, d: dict) -> "Product":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise TypeError(f"a product must be a JSON object, not {type(d).__name__}: {d!r}")
        if not d.get("id"):
            raise ValueError(f"product without an id: {d!r}")
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["id"] = str(kwargs["id"])
        for num in ("price", "rating", "popularity"):
            v = kwargs.get(num)
            kwargs[num] = None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
        category = kwargs.get("category") or []
        kwargs["category"] = [category] if isinstance(category, str) else list(category)
        for name in ("title", "description", "brand", "image_path"):
            if kwargs.get(name) is not None and not isinstance(kwargs[name], str):
                raise TypeError(f"{name} must be a string, got {kwargs[name]!r}")
        if not all(isinstance(c, str) for c in kwargs["category"]):
            raise TypeError(f"category must be a list of strings, got {kwargs['category']!r}")
        return cls(**kwargs)


@dataclass
class Edge:
    src: str
    dst: str
    type: str = "also_buy"


@dataclass
class Interaction:
    user: str
    item: str
    timestamp: float = 0.0
    rating: float | None = None


class Catalog:
    """Products plus co-purchase edges plus (optional) user interactions.

    Products are indexed ``0..N-1`` in insertion order; ``index_of`` maps an id to its row.
    """

    def __init__(
        self,
        products: Iterable[Product],
        edges: Iterable[Edge] = (),
        interactions: Iterable[Interaction] = (),
        name: str = "catalog",
        root: str | Path | None = None,
        meta: dict | None = None,
    ):
        self.name = name
        self.root = Path(root) if root is not None else None
        self.meta = dict(meta or {})
        self.products: list[Product] = []
        self.index_of: dict[str, int] = {}
        for p in products:
            if p.id in self.index_of:
                log.warning("duplicate product id %s skipped", p.id)
                continue
            self.index_of[p.id] = len(self.products)
            self.products.append(p)
        self.ids: list[str] = list(self.index_of)  # product ids in catalog order (built once: read per product at 1M)
        self.edges: list[Edge] = []
        dropped = 0
        for e in edges:
            if e.src in self.index_of and e.dst in self.index_of and e.src != e.dst:
                self.edges.append(e)
            else:
                dropped += 1
        if dropped:
            log.info("%d edges dropped (endpoint not in catalog or self-loop)", dropped)
        self.interactions: list[Interaction] = [i for i in interactions if i.item in self.index_of]

    def __len__(self) -> int:
        return len(self.products)

    def __repr__(self) -> str:
        return (f"Catalog(name={self.name!r}, products={len(self)}, edges={len(self.edges)}, "
                f"interactions={len(self.interactions)})")

    def image_file(self, product: Product) -> Path | None:
        """Absolute path of a product's image, or ``None``."""
        if not product.image_path:
            return None
        path = Path(product.image_path)
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        return path

    def edge_index(self, types: Iterable[str] | None = None) -> torch.Tensor:
        """``[2, E]`` tensor of edges of the given types (all types when ``None``), one direction each."""
        wanted = None if types is None else set(types)
        pairs = [(self.index_of[e.src], self.index_of[e.dst]) for e in self.edges if wanted is None or e.type in wanted]
        if not pairs:
            return torch.empty(2, 0, dtype=torch.long)
        return torch.tensor(pairs, dtype=torch.long).t().contiguous()

    def to_pyg(self, edge_types: Iterable[str] | None = None):
        """A PyG ``Data`` with ``num_nodes``, undirected ``edge_index`` and ``edge_type`` (index into EDGE_TYPES)."""
        from torch_geometric.data import Data
        from torch_geometric.utils import to_undirected

        wanted = list(EDGE_TYPES) if edge_types is None else list(edge_types)
        parts, types = [], []
        for t in wanted:
            ei = self.edge_index([t])
            parts.append(ei)
            types.append(torch.full((ei.size(1),), EDGE_TYPES.index(t), dtype=torch.long))
        edge_index = torch.cat(parts, dim=1) if parts else torch.empty(2, 0, dtype=torch.long)
        edge_type = torch.cat(types) if types else torch.empty(0, dtype=torch.long)
        edge_index, edge_type = to_undirected(edge_index, edge_type, num_nodes=len(self), reduce="min")
        return Data(num_nodes=len(self), edge_index=edge_index, edge_type=edge_type)

    def fingerprint(self) -> str:
        """A short content hash of products, edges and interactions (images by name and file size)."""
        h = hashlib.sha256()
        for p in self.products:
            h.update(json.dumps(asdict(p), sort_keys=True).encode())
            image = self.image_file(p)
            h.update(str(image.stat().st_size if image is not None and image.exists() else -1).encode())
        for e in self.edges:
            h.update(f"{e.src}\t{e.dst}\t{e.type}\n".encode())
        for i in self.interactions:
            h.update(f"{i.user}\t{i.item}\t{i.timestamp}\t{i.rating}\n".encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ persistence
    def save(self, root: str | Path) -> Path:
        """Write the catalog in the on-disk format described in this module's docstring."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "products.jsonl", "w", encoding="utf-8") as f:
            for p in self.products:
                f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
        with open(root / "edges.tsv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["src", "dst", "type"])
            w.writerows((e.src, e.dst, e.type) for e in self.edges)
        with open(root / "interactions.tsv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["user", "item", "timestamp", "rating"])
            w.writerows((i.user, i.item, i.timestamp, "" if i.rating is None else i.rating) for i in self.interactions)
        info = {"name": self.name, "format_version": FORMAT_VERSION, "edge_types": list(EDGE_TYPES),
                "num_products": len(self), "num_edges": len(self.edges), "meta": self.meta}
        (root / "catalog.json").write_text(json.dumps(info, indent=2))
        self.root = root
        return root

    @classmethod
    def load(cls, root: str | Path) -> "Catalog":
        """Read a catalog directory; malformed product lines are counted, logged and skipped."""
        root = Path(root)
        info_path = root / "catalog.json"
        if not info_path.exists():
            raise FileNotFoundError(f"{root} is not a catalog directory (no catalog.json)")
        info = json.loads(info_path.read_text())
        products, bad = [], 0
        with open(root / "products.jsonl", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    products.append(Product.from_dict(json.loads(line)))
                except (ValueError, TypeError) as err:
                    bad += 1
                    log.warning("products.jsonl:%d skipped: %s", lineno, err)
        if bad:
            log.warning("%d malformed product lines skipped", bad)
        edges = [Edge(r["src"], r["dst"], r["type"]) for r in _read_tsv(root / "edges.tsv")]
        interactions = [
            Interaction(r["user"], r["item"], float(r["timestamp"] or 0), float(r["rating"]) if r["rating"] else None)
            for r in _read_tsv(root / "interactions.tsv")
        ]
        return cls(products, edges, interactions, name=info.get("name", root.name), root=root, meta=info.get("meta"))


def _read_tsv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))
