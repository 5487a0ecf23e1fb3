"""The embedded default catalog: a synthetic, seeded product world with a documented ground truth.

Ground truth (stored in ``catalog.meta["ground_truth"]``):

* Every product belongs to one of 26 categories grouped into 9 *domains*; inside a domain some category pairs
  are *complements* (phone -> case, camera -> memory card, ...), listed in ``COMPLEMENTS``.
* Every product belongs to a hidden *collection* (a product line of ~12 items in one domain). A collection has a
  dominant colour, a house brand and a price tier, which its products follow only in part (60% colour, 50% brand),
  so content is a noisy hint of the collection, never a key to it.
* ``also_buy`` links come from shopping baskets: a popularity-weighted anchor plus 1-3 of its complements,
  75% from the anchor's collection, 20% from other collections with the same colour, 5% anything; every pair in
  a basket is linked (so accessories bought with the same phone are linked too). ``bought_together`` marks 30%
  of the anchor-to-first-item pairs inside a collection. ``also_view`` links join substitutes (same category, same
  collection or colour). Because collections are hidden, the graph carries signal that content alone does not.
* Every product also has a *material* (``ground_truth["material"]``): named in its text, invisible in its image.
* Images are drawn from category (shape), colour and pattern, with jitter and pixel noise; titles and descriptions
  are composed from attribute words with synonyms, typos and dropped words. ~8% of products have no image,
  ~15% no description, ~2% no text at all.
* Users prefer 1-3 collections; 70% of their interactions fall in them, the rest in their domains or anywhere.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .catalog import Catalog, Edge, Interaction, Product
from .sources import CATALOG_SOURCES, CatalogSource

log = logging.getLogger(__name__)

# category -> (domain, nouns, shape)
CATEGORIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "Phones": ("mobile", ("phone", "smartphone", "mobile phone"), "tall_rect"),
    "Phone Cases": ("mobile", ("phone case", "phone cover", "case"), "frame"),
    "Chargers": ("mobile", ("charger", "power adapter", "charging brick"), "plug"),
    "Headphones": ("mobile", ("headphones", "earphones", "headset"), "arc"),
    "Cameras": ("photo", ("camera", "digital camera", "mirrorless camera"), "camera"),
    "Memory Cards": ("photo", ("memory card", "SD card", "storage card"), "notched"),
    "Tripods": ("photo", ("tripod", "camera stand"), "tripod"),
    "Camera Bags": ("photo", ("camera bag", "gear bag"), "bag"),
    "Laptops": ("computing", ("laptop", "notebook computer", "ultrabook"), "laptop"),
    "Laptop Sleeves": ("computing", ("laptop sleeve", "laptop bag"), "wide_rect"),
    "Mice": ("computing", ("mouse", "wireless mouse"), "ellipse"),
    "Keyboards": ("computing", ("keyboard", "mechanical keyboard"), "keys"),
    "Coffee Makers": ("kitchen", ("coffee maker", "espresso machine", "brewer"), "machine"),
    "Coffee Beans": ("kitchen", ("coffee beans", "ground coffee", "espresso roast"), "dots_bag"),
    "Mugs": ("kitchen", ("mug", "coffee cup", "travel mug"), "mug"),
    "Running Shoes": ("running", ("running shoes", "sneakers", "trainers"), "shoe"),
    "Sports Socks": ("running", ("sports socks", "running socks"), "sock"),
    "Water Bottles": ("running", ("water bottle", "sports bottle", "flask"), "bottle"),
    "Yoga Mats": ("yoga", ("yoga mat", "exercise mat"), "roll"),
    "Yoga Blocks": ("yoga", ("yoga block", "foam block"), "cube"),
    "Dog Food": ("pets", ("dog food", "kibble"), "dots_bag"),
    "Dog Toys": ("pets", ("dog toy", "chew toy"), "bone"),
    "Wallets": ("accessories", ("wallet", "billfold", "card holder"), "wide_rect"),
    "Handbags": ("accessories", ("handbag", "purse", "tote"), "bag"),
    "Watches": ("time", ("watch", "wristwatch", "smartwatch"), "circle"),
    "Watch Bands": ("time", ("watch band", "watch strap"), "strap"),
}
COMPLEMENTS: dict[str, tuple[str, ...]] = {
    "Phones": ("Phone Cases", "Chargers", "Headphones"),
    "Cameras": ("Memory Cards", "Tripods", "Camera Bags"),
    "Laptops": ("Laptop Sleeves", "Mice", "Keyboards"),
    "Coffee Makers": ("Coffee Beans", "Mugs"),
    "Coffee Beans": ("Mugs",),
    "Running Shoes": ("Sports Socks", "Water Bottles"),
    "Yoga Mats": ("Yoga Blocks", "Water Bottles"),
    "Dog Food": ("Dog Toys",),
    "Wallets": ("Handbags",),
    "Watches": ("Watch Bands",),
}
COLORS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((200, 30, 40), ("red", "crimson", "scarlet")),
    "blue": ((30, 70, 200), ("blue", "navy", "cobalt")),
    "green": ((40, 160, 60), ("green", "emerald", "forest green")),
    "black": ((25, 25, 25), ("black", "jet black", "onyx")),
    "white": ((235, 235, 235), ("white", "ivory", "snow white")),
    "yellow": ((235, 200, 30), ("yellow", "mustard", "golden")),
    "pink": ((235, 120, 170), ("pink", "rose", "blush")),
    "brown": ((120, 75, 35), ("brown", "chocolate", "tan")),
    "grey": ((128, 128, 128), ("grey", "gray", "slate")),
    "orange": ((240, 130, 30), ("orange", "tangerine", "amber")),
    "purple": ((120, 50, 160), ("purple", "violet", "plum")),
    "teal": ((20, 140, 140), ("teal", "turquoise", "aqua")),
}
PATTERNS = ("solid", "striped", "dotted", "checked")
MATERIALS = ("leather", "plastic", "aluminum", "canvas", "silicone", "steel", "cotton", "bamboo")
ADJECTIVES = ("premium", "classic", "compact", "durable", "lightweight", "pro", "essential", "deluxe")
BRANDS = ("Acme", "Nordvik", "Lumen", "Kestrel", "Orbis", "Vanta", "Solano", "Pinecrest", "Halcyon", "Zephyr",
          "Marlow", "Quill", "Tundra", "Bravado", "Cobalt Co", "Ember", "Fathom", "Glint", "Harbor", "Ionic")
BASE_PRICE = {"Phones": 500, "Laptops": 900, "Cameras": 600, "Coffee Makers": 150, "Watches": 200,
              "Running Shoes": 90, "Handbags": 80, "Headphones": 70, "Keyboards": 60, "Tripods": 45}


@CATALOG_SOURCES.register("synthetic")
@dataclass
class SyntheticConfig(CatalogSource):
    """The generator's options (``data=synthetic``); a cached catalog source."""

    num_products: int = 2000
    num_users: int = 600
    collection_size: int = 12
    baskets_per_product: float = 1.5
    image_size: int = 96
    missing_image_rate: float = 0.08
    missing_description_rate: float = 0.15
    missing_text_rate: float = 0.02
    seed: int = 0

    def __post_init__(self):
        for name, low in (("num_products", 1), ("num_users", 0), ("collection_size", 1), ("image_size", 8)):
            if int(getattr(self, name)) < low:
                raise ValueError(f"data.{name} must be at least {low}, got {getattr(self, name)}")
        for name in ("missing_image_rate", "missing_description_rate", "missing_text_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"data.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.baskets_per_product < 0:
            raise ValueError(f"data.baskets_per_product must be >= 0, got {self.baskets_per_product}")

    def key(self) -> str:
        blob = json.dumps(self.__dict__, sort_keys=True) + f"v{GENERATOR_VERSION}"
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def cache_key(self) -> str:
        return f"synthetic-{self.num_products}-s{self.seed}-{self.key()}"

    def build(self, root: Path) -> None:
        generate(self, root)


GENERATOR_VERSION = 3  # 3: material in the ground truth (same draws, same catalog)


def generate(cfg: SyntheticConfig, root: str | Path) -> Catalog:
    """Generate the catalog (images included) into ``root`` and return it."""
    rng = np.random.default_rng(cfg.seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    categories = list(CATEGORIES)
    domains = sorted({d for d, _, _ in CATEGORIES.values()})
    domain_cats = {d: [c for c in categories if CATEGORIES[c][0] == d] for d in domains}

    n = cfg.num_products
    coll_domain = _collection_domains(n, cfg.collection_size)
    num_collections = len(coll_domain)
    coll_color = rng.choice(list(COLORS), num_collections)
    coll_brand = rng.choice(BRANDS, num_collections)
    coll_tier = rng.choice([0.7, 1.0, 1.6], num_collections)

    products, truth = [], {"collection": [], "color": [], "pattern": [], "domain": [], "material": []}
    collection = rng.integers(0, num_collections, n)
    popularity = rng.lognormal(3.0, 1.0, n)
    for i in range(n):
        c = int(collection[i])
        dom = coll_domain[c]
        cat = str(rng.choice(domain_cats[dom]))
        color = str(coll_color[c]) if rng.random() < 0.6 else str(rng.choice(list(COLORS)))
        pattern = str(rng.choice(PATTERNS, p=[0.55, 0.15, 0.15, 0.15]))
        brand = str(coll_brand[c]) if rng.random() < 0.5 else str(rng.choice(BRANDS))
        material = str(rng.choice(MATERIALS))
        pid = f"P{i:05d}"
        price = round(float(BASE_PRICE.get(cat, 25) * coll_tier[c] * rng.lognormal(0, 0.25)), 2)
        rating = round(float(np.clip(rng.normal(4.1, 0.6), 1, 5)), 1)
        title, description = _compose_text(rng, cat, color, pattern, brand, material)
        if rng.random() < cfg.missing_description_rate:
            description = None
        if rng.random() < cfg.missing_text_rate:
            title, description = None, None
        image_path = None
        if rng.random() >= cfg.missing_image_rate:
            image_path = f"images/{pid}.png"
            _draw_image(rng, CATEGORIES[cat][2], COLORS[color][0], pattern, cfg.image_size).save(root / image_path)
        products.append(Product(
            id=pid, title=title, description=description, brand=brand if rng.random() > 0.05 else None,
            category=[dom.title(), cat], price=price, rating=rating,
            popularity=round(float(popularity[i]), 2), image_path=image_path,
        ))
        for k, v in (("collection", c), ("color", color), ("pattern", pattern), ("domain", dom),
                     ("material", material)):
            truth[k].append(v)

    cats = np.array([p.category[1] for p in products])
    colors = np.array(truth["color"])
    edges = _sample_edges(rng, cats, collection, colors, popularity, [p.id for p in products], cfg.baskets_per_product)
    interactions = _sample_interactions(rng, cfg.num_users, collection, coll_domain, truth["domain"], popularity,
                                        [p.id for p in products])
    meta = {"generator": "synthetic", "generator_version": GENERATOR_VERSION, "config": cfg.__dict__,
            "ground_truth": truth, "complements": {k: list(v) for k, v in COMPLEMENTS.items()}}
    catalog = Catalog(products, edges, interactions, name=f"synthetic-{n}", root=root, meta=meta)
    catalog.save(root)
    log.info("generated %r into %s", catalog, root)
    return catalog


def _collection_domains(num_products: int, collection_size: int) -> list[str]:
    """Each collection's domain (the domains in turn)."""
    domains = sorted({d for d, _, _ in CATEGORIES.values()})
    return [domains[i % len(domains)] for i in range(max(len(domains), math.ceil(num_products / collection_size)))]


def sample_users(catalog: Catalog, num_users: int, per_user: tuple[int, int], seed: int | list[int]
                 ) -> list[Interaction]:
    """Interactions of ``num_users`` new users of a generated catalog, drawn as the generator draws its own (1-3
    preferred collections, 70% of the interactions in them), each with ``per_user[0]`` to ``per_user[1]`` draws
    (a user may draw an item twice)."""
    truth, cfg = catalog.meta["ground_truth"], catalog.meta["config"]
    popularity = np.array([p.popularity for p in catalog.products], dtype=float)
    return _sample_interactions(np.random.default_rng(seed), num_users, np.asarray(truth["collection"]),
                                _collection_domains(len(catalog), cfg["collection_size"]), truth["domain"],
                                popularity, catalog.ids, per_user)


def _complements(cat: str) -> set[str]:
    out = set(COMPLEMENTS.get(cat, ()))
    out.update(k for k, v in COMPLEMENTS.items() if cat in v)
    return out


class _Pool:
    """Products drawn in proportion to a weight, as ``rng.choice(pool, p=w / w.sum())`` draws them (one uniform
    number per draw, the same product up to float rounding), in O(log n) a draw after an O(n) setup, so a large
    catalog is generated in O(n log n). A draw may leave out a few members (``exclude``) and add a few other
    products (``extra``). ``members`` must be sorted."""

    def __init__(self, members: np.ndarray, weight: np.ndarray):
        self.members, self.all_weights = members, weight
        self.cum = np.cumsum(weight[members])

    def draw(self, rng, exclude=(), extra=()) -> int | None:
        """A product of ``members - exclude + extra`` (``None``, drawing nothing, when that is empty)."""
        exclude = np.unique(np.asarray(exclude, dtype=np.int64))
        extra = np.setdiff1d(np.asarray(extra, dtype=np.int64), exclude)
        pos = np.searchsorted(self.members, exclude).clip(max=max(len(self.members) - 1, 0))
        exclude = exclude[self.members[pos] == exclude] if len(self.members) else exclude[:0]
        if len(exclude) == len(self.members) and not len(extra):
            return None
        w = self.all_weights
        total = (self.cum[-1] if len(self.members) else 0.0) + w[extra].sum() - w[exclude].sum()
        target = rng.random() * total
        # walk the few added and left-out products in id order; `shift` is what they add before the current one
        events = sorted([(int(v), w[v]) for v in extra] + [(int(v), -w[v]) for v in exclude])
        shift = 0.0
        for v, dw in events:
            p = int(np.searchsorted(self.members, v))
            if p and self.cum[p - 1] + shift > target:  # the draw falls among the members before v
                break
            if dw > 0 and (self.cum[p - 1] if p else 0.0) + shift + dw > target:
                return v  # on the added product v itself
            shift += dw
        j = int(np.searchsorted(self.cum, target - shift, side="right"))
        if j < len(self.members):
            return int(self.members[j])
        tail = np.setdiff1d(np.concatenate([self.members[-len(exclude) - 1:], extra]), exclude)
        return int(tail[-1])  # float rounding past the end: the pool's last product


def _groups(keys: np.ndarray) -> dict:
    """``key -> sorted indices of keys equal to it``, in O(n log n)."""
    order = np.argsort(keys, kind="stable")
    values, starts = np.unique(keys[order], return_index=True)
    return {k.item(): g for k, g in zip(values, np.split(order, starts[1:]))}


def _sample_edges(rng, cats, collection, colors, popularity, ids, baskets_per_product: float) -> list[Edge]:
    """Co-purchase links from shopping baskets: an anchor plus 1-3 complements, every pair in a basket linked."""
    n = len(ids)
    by_coll = _groups(collection)
    by_cat_color = _groups(np.char.add(np.char.add(cats, "\t"), colors))
    comp_mask = {c: np.isin(cats, list(_complements(c))) for c in CATEGORIES}
    weight = popularity / popularity.sum()
    everyone = _Pool(np.arange(n), weight)
    complement_pools: dict[tuple[str, str], _Pool] = {}  # (category, colour) -> its complements of that colour
    also_buy, together, also_view = set(), set(), set()

    for _ in range(int(baskets_per_product * n)):
        anchor = everyone.draw(rng)
        same = by_coll[int(collection[anchor])]
        basket = [anchor]
        for _ in range(1 + min(2, rng.poisson(0.8))):
            r = rng.random()
            if r < 0.75:
                pool = _Pool(same[comp_mask[cats[anchor]][same]], weight)
            elif r < 0.95:
                key = (cats[anchor], colors[anchor])
                if key not in complement_pools:
                    complement_pools[key] = _Pool(np.flatnonzero(comp_mask[key[0]] & (colors == key[1])), weight)
                pool = complement_pools[key]
            else:
                pool = everyone
            j = pool.draw(rng, basket)
            if j is not None:
                basket.append(j)
        pairs = {(min(a, b), max(a, b)) for k, a in enumerate(basket) for b in basket[k + 1:]}
        also_buy |= pairs
        if len(basket) > 1 and collection[basket[1]] == collection[anchor] and rng.random() < 0.3:
            together.add((min(anchor, basket[1]), max(anchor, basket[1])))
    substitutes = {key: _Pool(members, weight) for key, members in by_cat_color.items()}
    for i in range(n):
        for _ in range(rng.poisson(1.5)):  # substitutes: same category, same collection or colour
            coll = by_coll[int(collection[i])]
            others = coll[(cats[coll] == cats[i]) & (colors[coll] != colors[i])]  # same collection, other colour
            j = substitutes[f"{cats[i]}\t{colors[i]}"].draw(rng, [i], others)
            if j is not None:
                also_view.add((min(i, j), max(i, j)))
    out = [Edge(ids[a], ids[b], "also_buy") for a, b in sorted(also_buy)]
    out += [Edge(ids[a], ids[b], "bought_together") for a, b in sorted(together)]
    out += [Edge(ids[a], ids[b], "also_view") for a, b in sorted(also_view)]
    return out


def _sample_interactions(rng, num_users, collection, coll_domain, domain, popularity, ids,
                         per_user: tuple[int, int] = (5, 29)) -> list[Interaction]:
    domain = np.asarray(domain)
    num_coll = len(coll_domain)
    weight = popularity / popularity.sum()
    by_coll, by_domain = _groups(np.asarray(collection)), _groups(domain)
    everyone = _Pool(np.arange(len(ids)), weight)
    domain_pools: dict[tuple[str, ...], _Pool] = {}
    out = []
    for u in range(num_users):
        liked = rng.choice(num_coll, size=int(rng.integers(1, 4)), replace=False)
        in_liked = _Pool(np.sort(np.concatenate([by_coll.get(int(c), np.zeros(0, dtype=np.int64)) for c in liked])),
                         weight)
        domains = tuple(sorted({coll_domain[c] for c in liked}))
        if domains not in domain_pools:
            domain_pools[domains] = _Pool(np.sort(np.concatenate([by_domain.get(d, np.zeros(0, dtype=np.int64))
                                                                  for d in domains])), weight)
        t = 1_600_000_000.0 + rng.uniform(0, 3e7)
        for _ in range(int(rng.integers(per_user[0], per_user[1] + 1))):
            r = rng.random()
            # (liked collections may all be empty in a large catalog: their share goes to their domains)
            pool = in_liked if r < 0.7 and len(in_liked.members) else domain_pools[domains] if r < 0.9 else everyone
            item = pool.draw(rng)
            t += rng.exponential(86400 * 3)
            out.append(Interaction(f"U{u:05d}", ids[item], round(t, 1), float(rng.integers(3, 6))))
    return out


def _typo(rng, word: str) -> str:
    if len(word) < 4:
        return word
    k = int(rng.integers(1, len(word) - 1))
    return word[:k] + word[k + 1] + word[k] + word[k + 2:]


def _compose_text(rng, cat, color, pattern, brand, material) -> tuple[str, str]:
    noun = str(rng.choice(CATEGORIES[cat][1]))
    color_word = str(rng.choice(COLORS[color][1]))
    words = [brand, str(rng.choice(ADJECTIVES)), color_word]
    if pattern != "solid":
        words.append(pattern)
    words += [material, noun]
    words = [w for w in words if w in (noun, color_word) or rng.random() > 0.2]  # dropped words
    words = [_typo(rng, w) if rng.random() < 0.05 else w for w in words]
    title = " ".join(words)
    description = (f"A {pattern} {color_word} {noun} made of {material} by {brand}. "
                   f"{str(rng.choice(ADJECTIVES)).capitalize()} {cat.lower()} for everyday use.")
    return title, description


def _draw_image(rng, shape: str, rgb, pattern: str, size: int) -> Image.Image:
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    s = size / 96.0
    jx, jy = (int(v) for v in rng.integers(-6, 7, 2) * s)
    fill = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in rgb)
    dark = tuple(max(0, v - 70) for v in fill)

    def box(x0, y0, x1, y1):
        return [x0 * s + jx, y0 * s + jy, x1 * s + jx, y1 * s + jy]

    shapes = {
        "tall_rect": lambda: d.rounded_rectangle(box(30, 12, 66, 84), radius=int(6 * s), fill=fill),
        "frame": lambda: d.rounded_rectangle(box(28, 10, 68, 86), radius=int(8 * s), outline=fill, width=int(7 * s)),
        "plug": lambda: (d.rectangle(box(30, 34, 66, 70), fill=fill), d.rectangle(box(38, 18, 43, 34), fill=dark),
                         d.rectangle(box(53, 18, 58, 34), fill=dark)),
        "arc": lambda: (d.arc(box(20, 14, 76, 74), 180, 360, fill=fill, width=int(7 * s)),
                        d.ellipse(box(14, 44, 32, 70), fill=fill), d.ellipse(box(64, 44, 82, 70), fill=fill)),
        "camera": lambda: (d.rectangle(box(14, 30, 82, 74), fill=fill), d.ellipse(box(34, 36, 62, 66), fill=dark)),
        "notched": lambda: d.polygon([(34 * s + jx, 20 * s + jy), (52 * s + jx, 20 * s + jy), (62 * s + jx, 30 * s + jy),
                                      (62 * s + jx, 76 * s + jy), (34 * s + jx, 76 * s + jy)], fill=fill),
        "tripod": lambda: [d.line(box(48, 20, x, 84), fill=fill, width=int(5 * s)) for x in (20, 48, 76)],
        "bag": lambda: (d.rectangle(box(18, 36, 78, 82), fill=fill), d.arc(box(32, 16, 64, 52), 180, 360, fill=dark, width=int(5 * s))),
        "laptop": lambda: (d.rectangle(box(22, 18, 74, 58), fill=fill), d.polygon(
            [(14 * s + jx, 74 * s + jy), (82 * s + jx, 74 * s + jy), (74 * s + jx, 60 * s + jy), (22 * s + jx, 60 * s + jy)], fill=dark)),
        "wide_rect": lambda: d.rounded_rectangle(box(12, 30, 84, 68), radius=int(5 * s), fill=fill),
        "ellipse": lambda: d.ellipse(box(30, 16, 66, 80), fill=fill),
        "keys": lambda: [d.rectangle(box(10 + 11 * c, 34 + 11 * r, 19 + 11 * c, 43 + 11 * r), fill=fill)
                         for r in range(3) for c in range(7)],
        "machine": lambda: (d.rectangle(box(26, 12, 70, 84), fill=fill), d.rectangle(box(36, 50, 60, 70), fill=dark)),
        "dots_bag": lambda: (d.polygon([(30 * s + jx, 14 * s + jy), (66 * s + jx, 14 * s + jy), (74 * s + jx, 84 * s + jy),
                                        (22 * s + jx, 84 * s + jy)], fill=fill), d.ellipse(box(40, 40, 56, 56), fill=dark)),
        "mug": lambda: (d.rectangle(box(24, 26, 62, 78), fill=fill), d.arc(box(54, 36, 80, 66), 270, 90, fill=fill, width=int(6 * s))),
        "shoe": lambda: d.polygon([(12 * s + jx, 70 * s + jy), (84 * s + jx, 70 * s + jy), (84 * s + jx, 58 * s + jy),
                                   (46 * s + jx, 46 * s + jy), (34 * s + jx, 30 * s + jy), (14 * s + jx, 34 * s + jy)], fill=fill),
        "sock": lambda: (d.rectangle(box(34, 10, 54, 60), fill=fill), d.ellipse(box(34, 48, 76, 78), fill=fill)),
        "bottle": lambda: (d.rectangle(box(36, 28, 60, 86), fill=fill), d.rectangle(box(42, 12, 54, 28), fill=dark)),
        "roll": lambda: (d.rectangle(box(16, 36, 80, 62), fill=fill), d.ellipse(box(70, 34, 86, 64), fill=dark)),
        "cube": lambda: d.rectangle(box(26, 26, 70, 70), fill=fill),
        "bone": lambda: (d.rectangle(box(26, 42, 70, 54), fill=fill), *[d.ellipse(box(x, y, x + 16, y + 16), fill=fill)
                                                                         for x in (14, 66) for y in (32, 48)]),
        "circle": lambda: (d.ellipse(box(22, 22, 74, 74), fill=fill), d.line(box(48, 48, 48, 30), fill=dark, width=int(3 * s))),
        "strap": lambda: (d.rectangle(box(40, 6, 56, 90), fill=fill), d.rectangle(box(36, 40, 60, 56), outline=dark, width=int(3 * s))),
    }
    shapes[shape]()
    if pattern != "solid":
        overlay = Image.new("L", (size, size), 0)
        od = ImageDraw.Draw(overlay)
        step = max(4, int(10 * s))
        for k in range(0, size, step):
            if pattern in ("striped", "checked"):
                od.line([(k, 0), (k, size)], fill=255, width=max(1, step // 3))
            if pattern == "checked":
                od.line([(0, k), (size, k)], fill=255, width=max(1, step // 3))
            if pattern == "dotted":
                for m in range(0, size, step):
                    od.ellipse([k, m, k + step // 3, m + step // 3], fill=255)
        shape_mask = (np.abs(np.asarray(img, dtype=int) - bg).sum(-1) > 30).astype(np.uint8) * 255
        img.paste(Image.new("RGB", (size, size), dark), (0, 0), Image.fromarray(np.minimum(np.asarray(overlay), shape_mask)))
    img = img.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, fillcolor=bg)
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 6, (size, size, 3)).astype(np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0, 0.8))))
