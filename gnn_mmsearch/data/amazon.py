"""Amazon Reviews (2014 / 2018 / 2023) -> :class:`Catalog`, streamed line by line, with a :class:`LoadReport`.

Products are de-duplicated by ASIN (the first line wins). Reviews become interactions (one per user and item,
the first wins) when a reviews file is given. The k-core (``k_core`` > 0) is applied iteratively to the
user-item interaction graph: users and items with fewer than ``k`` interactions are removed until none is left,
and, as in the published k-core subsets, **products outside the k-core are dropped from the catalog**. Without
reviews (or with ``k_core: 0``) every product is kept. A product's ``rating`` / ``popularity`` are its mean
review rating and review count (the 2023 metadata's own ``average_rating`` / ``rating_number`` when it has no
reviews). Co-purchase links are kept only when both ends are in the final catalog; the others are counted as
dangling. With ``images_dir``, a product's ``image_path`` is ``images_dir/<ASIN>.jpg`` when that file exists and
decodes; the others carry no image (the model masks the modality). A product left with no title, description,
image or link has nothing to search it by or from (all such products would share one vector): it is dropped, with
its interactions, and counted. Image URLs (of every product read, so a download can bring a dropped one back) go to
``image_urls.tsv`` in the saved catalog directory, where ``gnn-mmsearch download-images`` reads them.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from PIL import Image
from tqdm.auto import tqdm

from .amazon_formats import (FORMATS, MALFORMED, META_PARSERS, REVIEW_PARSERS, MetaRecord, ReviewRecord,
                             format_mismatch, open_lines)
from .catalog import EDGE_TYPES, Catalog, Edge, Interaction, Product
from .sources import CATALOG_SOURCES, CatalogSource

log = logging.getLogger(__name__)

LOADER_VERSION = 2  # 2: images must decode, products with nothing to search them by are dropped
IMAGE_URLS = "image_urls.tsv"
_SHOWN = 5  # malformed lines logged one by one per file; the rest are only counted
T = TypeVar("T")


@CATALOG_SOURCES.register("amazon")
@dataclass
class AmazonConfig(CatalogSource):
    """Where the Amazon files are and how to read them (``data=amazon``); a cached catalog source."""

    format: str
    meta_path: str
    reviews_path: str | None = None
    images_dir: str | None = None
    k_core: int = 5

    def __post_init__(self):
        self.format = str(self.format)
        if self.format not in FORMATS:
            raise ValueError(f"unknown Amazon format {self.format!r} ({' | '.join(FORMATS)})")
        if self.k_core < 0:
            raise ValueError(f"k_core must be >= 0, got {self.k_core}")

    def cache_key(self) -> str:
        """``amazon-`` + a hash of the config, the loader version and the input files' size and mtime."""
        stats = {}
        for path in (self.meta_path, self.reviews_path, self.images_dir):
            if path:
                st = Path(path).expanduser().stat()
                stats[str(Path(path).expanduser().resolve())] = (st.st_size, st.st_mtime_ns)
        blob = json.dumps({"cfg": asdict(self), "files": stats, "version": LOADER_VERSION}, sort_keys=True)
        return f"amazon-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def build(self, root: Path) -> None:
        catalog = load_amazon(self)
        save_image_urls(catalog, root)
        catalog.save(root)


@dataclass
class LoadReport:
    """What loading kept, dropped and could not read."""

    meta_lines: int = 0
    malformed_meta: int = 0
    duplicate_products: int = 0
    no_title: int = 0
    unparsed_price: int = 0  # not a number or range, or not a price (NaN, infinite, negative): price unknown
    review_lines: int = 0
    malformed_reviews: int = 0
    duplicate_reviews: int = 0
    reviews_unknown_item: int = 0
    kcore_dropped_products: int = 0
    kcore_dropped_users: int = 0
    kcore_dropped_interactions: int = 0
    dropped_no_content: int = 0  # products with no title, description, image or link
    dropped_no_content_interactions: int = 0
    products: int = 0
    interactions: int = 0
    links: dict[str, int] = field(default_factory=dict)
    dangling_links: dict[str, int] = field(default_factory=dict)
    images_found: int = 0  # products whose image file decodes
    images_missing: int = 0  # products without one: no file, or a file that does not decode ...
    images_unreadable: int = 0  # ... of which: a file that does not decode

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


def read_records(path: str | Path, parse: Callable[[str], T], what: str) -> Iterator[T | None]:
    """Parsed records of a file, ``None`` for each malformed line (logged for the first few)."""
    shown = 0
    for lineno, line in enumerate(tqdm(open_lines(path), desc=f"read {what}", unit=" lines", disable=None), 1):
        if not line.strip():
            continue
        try:
            record = parse(line.decode("utf-8"))  # UnicodeDecodeError is a ValueError: a malformed line
        except MALFORMED as err:
            if shown < _SHOWN:
                log.warning("%s:%d malformed %s line skipped: %s", Path(path).name, lineno, what,
                            "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else err)
            shown += 1
            yield None
        else:
            yield record


def k_core(pairs: set[tuple[str, str]], k: int) -> set[tuple[str, str]]:
    """The user-item pairs left after removing, repeatedly, users and items with fewer than ``k`` pairs."""
    while True:
        users = Counter(u for u, _ in pairs)
        items = Counter(i for _, i in pairs)
        kept = {(u, i) for u, i in pairs if users[u] >= k and items[i] >= k}
        if len(kept) == len(pairs):
            return kept
        pairs = kept


def read_meta(path: str | Path, fmt: str, report: LoadReport) -> dict[str, MetaRecord]:
    """The products of a metadata file by ASIN (the first line wins); lines, malformed lines and duplicates are
    counted in ``report``."""
    records: dict[str, MetaRecord] = {}
    for record in read_records(path, META_PARSERS[fmt], "metadata"):
        report.meta_lines += 1
        if record is None:
            report.malformed_meta += 1
        elif record.asin in records:
            report.duplicate_products += 1
        else:
            records[record.asin] = record
    return records


def _read_reviews(cfg: AmazonConfig, known: dict[str, MetaRecord],
                  report: LoadReport) -> dict[tuple[str, str], ReviewRecord]:
    reviews: dict[tuple[str, str], ReviewRecord] = {}
    for review in read_records(cfg.reviews_path, REVIEW_PARSERS[cfg.format], "review"):
        report.review_lines += 1
        if review is None:
            report.malformed_reviews += 1
        elif review.item not in known:
            report.reviews_unknown_item += 1
        elif (review.user, review.item) in reviews:
            report.duplicate_reviews += 1
        else:
            reviews[(review.user, review.item)] = review
    return reviews


def _links(records: dict[str, MetaRecord], report: LoadReport) -> list[Edge]:
    seen, edges = set(), []
    kept, dangling = Counter(), Counter()
    for asin, record in records.items():
        for edge_type, targets in record.links.items():
            for target in targets:
                if target not in records:
                    dangling[edge_type] += 1
                    continue
                key = (min(asin, target), max(asin, target), edge_type)
                if target != asin and key not in seen:  # undirected: a link listed from both ends counts once
                    seen.add(key)
                    edges.append(Edge(asin, target, edge_type))
                    kept[edge_type] += 1
    report.links = {t: kept[t] for t in EDGE_TYPES}
    report.dangling_links = {t: dangling[t] for t in EDGE_TYPES}
    return edges


def to_product(record: MetaRecord, ratings: list[float], count: int, image: Path | None) -> Product:
    rating = sum(ratings) / len(ratings) if ratings else record.rating
    count = count or record.rating_count
    return Product(id=record.asin, title=record.title, description=record.description, brand=record.brand,
                   category=record.category, price=record.price, rating=rating,
                   popularity=float(count) if count else None, image_path=str(image) if image is not None else None)


def image_files(records: dict[str, MetaRecord], images_dir: str | None) -> tuple[dict[str, Path], set[str]]:
    """``<images_dir>/<ASIN>.jpg`` of the products whose file decodes, and the ASINs whose file does not."""
    if not images_dir:
        return {}, set()
    root = Path(images_dir).expanduser().resolve()
    found = {a: root / f"{a}.jpg" for a in records if (root / f"{a}.jpg").is_file()}
    unreadable = {a for a, path in found.items() if not _decodes(path)}
    return {a: p for a, p in found.items() if a not in unreadable}, unreadable


def _decodes(path: Path) -> bool:
    """Whether an image file decodes to the end (a JPEG at 1/8 scale: cheap, and a truncated one still fails), as
    the feature extractor will need it to."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (img.width // 8, img.height // 8))
            img.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder error on an untrusted file means "unreadable"
        return False


def load_amazon(cfg: AmazonConfig, name: str | None = None) -> Catalog:
    """Read the metadata (and reviews) of ``cfg`` into a catalog. ``catalog.meta`` holds ``load_report`` (the
    counts) and ``image_urls`` (id -> URL; :meth:`AmazonConfig.build` moves them to ``image_urls.tsv``)."""
    looks_like = format_mismatch(cfg.meta_path, cfg.format)
    if looks_like:
        raise ValueError(f"{cfg.meta_path} does not read as format {cfg.format} metadata; it looks like format "
                         f"{looks_like} (data.format={looks_like})")
    report = LoadReport()
    records = read_meta(cfg.meta_path, cfg.format, report)
    if not records:
        raise ValueError(f"no product read from {cfg.meta_path} as format {cfg.format}")
    interactions: list[Interaction] = []
    if cfg.reviews_path:
        reviews = _read_reviews(cfg, records, report)
        if cfg.k_core > 0:
            kept = k_core(set(reviews), cfg.k_core)
            report.kcore_dropped_interactions = len(reviews) - len(kept)
            report.kcore_dropped_users = len({u for u, _ in reviews}) - len({u for u, _ in kept})
            items = {i for _, i in kept}
            report.kcore_dropped_products = len(records) - len(items)
            records = {a: r for a, r in records.items() if a in items}
            if not records:
                raise ValueError(f"the {cfg.k_core}-core of the reviews leaves no product (data.k_core=0 keeps all)")
        else:
            kept = set(reviews)
            log.info("k-core off (k_core=0): all %d reviewed pairs kept", len(kept))
        interactions = [Interaction(r.user, r.item, r.timestamp, r.rating) for key, r in reviews.items() if key in kept]
        ratings, counts = defaultdict(list), Counter(r.item for r in reviews.values())
        for r in reviews.values():
            if r.rating is not None:
                ratings[r.item].append(r.rating)
    else:
        ratings, counts = defaultdict(list), Counter()
        log.info("no reviews file: metadata only, no interactions, k-core skipped")

    image_urls = {a: r.image_url for a, r in records.items() if r.image_url}
    images, unreadable = image_files(records, cfg.images_dir)
    edges = _links(records, report)
    linked = {e.src for e in edges} | {e.dst for e in edges}
    blank = {a for a, r in records.items() if not (r.title or r.description or a in images or a in linked)}
    if blank:
        records = {a: r for a, r in records.items() if a not in blank}
        report.dropped_no_content = len(blank)
        report.dropped_no_content_interactions = sum(i.item in blank for i in interactions)
        interactions = [i for i in interactions if i.item not in blank]
        log.warning("dropped %d products with no title, description, image or link (nothing to search them by)",
                    len(blank))
    products = [to_product(r, ratings[a], counts[a], images.get(a)) for a, r in records.items()]
    report.no_title = sum(p.title is None for p in products)
    report.unparsed_price = sum(r.price_unparsed for r in records.values())
    report.products, report.interactions = len(products), len(interactions)
    report.images_found = sum(p.image_path is not None for p in products)
    report.images_missing = len(products) - report.images_found
    report.images_unreadable = len(unreadable - blank)
    log.info("Amazon %s load report: %s", cfg.format, report.summary())
    meta = {"source": "amazon", "config": asdict(cfg), "load_report": asdict(report), "image_urls": image_urls}
    return Catalog(products, edges, interactions, name=name or Path(cfg.meta_path).name.split(".")[0], meta=meta)


def save_image_urls(catalog: Catalog, root: Path) -> None:
    """``image_urls.tsv`` (id, url) beside the catalog files, taken out of ``catalog.meta``."""
    with open(root / IMAGE_URLS, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "url"])
        w.writerows(catalog.meta.pop("image_urls", {}).items())
