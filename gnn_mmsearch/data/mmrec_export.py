"""User-item interactions + product content -> an MMRec dataset folder (what enoche/MMRec and ``task=recommend`` read).

    export_amazon("2018", "meta_Toys.json.gz", "Toys_5.json.gz", "data/toys", images_dir="images/")

is ``gnn-mmsearch export-mmrec``; :func:`export_mmrec` is the writer behind it (``data=mmrec_synthetic`` uses it
too). The folder is written into a temporary folder renamed into place, so a folder that exists is a whole export:

- ``<name>.inter``: tab-separated ``userID itemID rating timestamp x_label`` (0 train, 1 valid, 2 test), sorted by
  userID, then x_label, then itemID; timestamps in unix seconds.
- ``u_id_mapping.csv`` / ``i_id_mapping.csv``: tab-separated ``user_id userID`` / ``asin itemID``, the original
  id and its integer id, as MMRec's preprocessing notebooks write them. Ids follow the sorted original ids.
- ``image_feat.npy`` / ``text_feat.npy``: float32 ``[items, d]``, row ``i`` = itemID ``i``, from the project's
  extractors (``features/``); a zero row where the item has no such feature.
- ``feat_mask.npz``: ``image`` and ``text``, bool ``[items]``: True where the item has the feature (an image file
  that decodes; a title or description), False where its row is zeros.
- ``export.json``: the options and the counts of :class:`ExportReport`.

Steps: (user, item) pairs are de-duplicated keeping the earliest; the k-core keeps users and items with at least
``k_core`` interactions, repeated until nothing changes; each user's interactions are split train / valid / test
(a seeded shuffle, or by time with ``chronological``: the earliest train, the latest test). Per user, as MMRec's
``1splitting.ipynb``: ``floor(n * (valid + test))`` interactions are held out, ``floor(held * valid / (valid +
test))`` of them valid and the rest test; a user with too few for one of each (n < 10 at 8:1:1) gets one valid and
one test interaction, and a user with fewer than 3 (possible only with ``k_core`` < 3) keeps all in training.
With ``cold_item_ratio``, that share of the items (drawn with the seed) is cold: all their interactions go to valid
or test (in the valid:test ratio) and none to training; each user's other interactions are split as above.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .._atomic import atomic_directory
from .amazon import LoadReport, image_files, k_core, read_meta, read_records, to_product
from .amazon_formats import FORMATS, REVIEW_PARSERS, format_mismatch
from .catalog import Catalog, Interaction

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
USER_MAPPING, ITEM_MAPPING = "u_id_mapping.csv", "i_id_mapping.csv"
MASK_FILE, REPORT_FILE = "feat_mask.npz", "export.json"
HEADER = ("userID", "itemID", "rating", "timestamp", "x_label")
EXPORT_VERSION = 1


@dataclass
class ExportOptions:
    """How interactions become the splits: k-core, ratios, seed, order, cold items."""

    k_core: int = 5
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, valid, test (normalised to sum to 1)
    seed: int = 0
    chronological: bool = False
    cold_item_ratio: float = 0.0

    def __post_init__(self):
        split = tuple(float(s) for s in self.split)
        if len(split) != 3 or not all(s > 0 and math.isfinite(s) for s in split):
            raise ValueError(f"split must be three ratios above 0 (train,valid,test), got {self.split}")
        self.split = tuple(s / sum(split) for s in split)
        if self.k_core < 0:
            raise ValueError(f"k_core must be >= 0, got {self.k_core}")
        if not 0 <= self.cold_item_ratio < 1:
            raise ValueError(f"cold_item_ratio must be in [0, 1), got {self.cold_item_ratio}")


@dataclass(frozen=True)
class FeatureOptions:
    """Which extractors embed the items (any timm / sentence-transformers name they take) and where."""

    image_model: str = "tf_efficientnet_lite0"
    text_model: str = "all-MiniLM-L6-v2"
    device: str = "auto"
    cache_dir: str | None = None  # the content-keyed feature cache (None: extract everything, keep nothing)


@dataclass
class ExportReport:
    """What the export read, dropped and wrote."""

    review_lines: int = 0
    malformed_reviews: int = 0
    reviews_unknown_item: int = 0  # items not in the metadata
    duplicates: int = 0  # repeated (user, item) pairs: the earliest is kept
    kcore_dropped_users: int = 0
    kcore_dropped_items: int = 0
    kcore_dropped_interactions: int = 0
    users: int = 0
    items: int = 0
    interactions: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    users_all_train: int = 0  # fewer than 3 interactions: nothing held out
    cold_items: int = 0
    items_with_image: int | None = None  # None: features not extracted
    items_with_text: int | None = None

    def summary(self) -> str:
        splits = " / ".join(f"{name} {self.splits.get(name, 0):,}" for name in SPLITS)
        line = (f"{self.users:,} users, {self.items:,} items, {self.interactions:,} interactions ({splits}); dropped: "
                f"{self.malformed_reviews:,} malformed lines, {self.reviews_unknown_item:,} of unknown items, "
                f"{self.duplicates:,} duplicates, k-core {self.kcore_dropped_users:,} users / "
                f"{self.kcore_dropped_items:,} items / {self.kcore_dropped_interactions:,} interactions")
        if self.cold_items:
            line += f"; {self.cold_items:,} cold items"
        if self.items_with_image is not None:
            line += (f"; features: image {self.items_with_image:,}/{self.items:,}, "
                     f"text {self.items_with_text:,}/{self.items:,}")
        return line


def check_output(out: str | Path) -> None:
    """Raise ``ValueError`` when ``out`` exists or its folder cannot be written (checked before any work)."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists: give a new folder (an export never writes over one)")
    existing = next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {out}: {existing} is not a writable folder")


def export_mmrec(interactions: Iterable[Interaction], catalog: Catalog | None, out: str | Path, name: str | None = None,
                 options: ExportOptions | None = None, features: FeatureOptions | None = None,
                 report: ExportReport | None = None) -> ExportReport:
    """Create the MMRec folder ``out`` (it must not exist) with :func:`write_mmrec`, atomically; ``name`` defaults to
    the folder's name."""
    check_output(out)
    with atomic_directory(out) as tmp:
        report = write_mmrec(tmp, interactions, catalog, name or Path(out).name, options, features, report)
    log.info("MMRec export %s: %s", out, report.summary())
    return report


def write_mmrec(folder: Path, interactions: Iterable[Interaction], catalog: Catalog | None, name: str,
                options: ExportOptions | None = None, features: FeatureOptions | None = None,
                report: ExportReport | None = None) -> ExportReport:
    """Write the MMRec files (see the module docstring) of ``interactions`` into the existing ``folder``; ``catalog``
    holds the items' content (ids, text, images) for ``features`` (``None``: no feature files). Raises
    ``ValueError`` when nothing is left after the k-core."""
    options, report = options or ExportOptions(), report or ExportReport()
    first = _earliest(interactions, report)
    kept = k_core(set(first), options.k_core) if options.k_core else set(first)
    report.kcore_dropped_users = len({u for u, _ in first}) - len({u for u, _ in kept})
    report.kcore_dropped_items = len({i for _, i in first}) - len({i for _, i in kept})
    report.kcore_dropped_interactions = len(first) - len(kept)
    if not kept:
        raise ValueError(f"no interaction left after the {options.k_core}-core of {len(first)} (user, item) pairs: "
                         "lower the k-core (0 = off)")
    users, items = sorted({u for u, _ in kept}), sorted({i for _, i in kept})
    user_index, item_index = {u: k for k, u in enumerate(users)}, {i: k for k, i in enumerate(items)}
    rows = sorted((user_index[u], item_index[i], first[u, i]) for u, i in kept)
    user = np.array([r[0] for r in rows], dtype=np.int64)
    item = np.array([r[1] for r in rows], dtype=np.int64)
    timestamp = np.array([r[2].timestamp for r in rows], dtype=np.float64)
    label = assign_splits(user, item, timestamp, len(items), options, report)
    report.users, report.items, report.interactions = len(users), len(items), len(rows)
    report.splits = {name: int((label == k).sum()) for k, name in enumerate(SPLITS)}
    arrays = _item_features(catalog, items, features) if features is not None else {}
    if arrays:
        report.items_with_image, report.items_with_text = (int(arrays["mask"][m].sum()) for m in ("image", "text"))

    order = np.lexsort((item, label, user))
    with open(folder / f"{name}.inter", "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(HEADER) + "\n")
        for k in order:
            rating = rows[k][2].rating
            f.write(f"{user[k]}\t{item[k]}\t{'' if rating is None else float(rating)}\t"
                    f"{_number(timestamp[k])}\t{label[k]}\n")
    _write_mapping(folder / USER_MAPPING, ("user_id", "userID"), users)
    _write_mapping(folder / ITEM_MAPPING, ("asin", "itemID"), items)
    if arrays:
        np.save(folder / "image_feat.npy", arrays["image"])
        np.save(folder / "text_feat.npy", arrays["text"])
        np.savez(folder / MASK_FILE, **arrays["mask"])
    info = {"version": EXPORT_VERSION, "name": name, "options": asdict(options),
            "features": asdict(features) if features is not None else None, "report": asdict(report)}
    (folder / REPORT_FILE).write_text(json.dumps(info, indent=2))
    return report


def assign_splits(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray, num_items: int,
                  options: ExportOptions, report: ExportReport | None = None) -> np.ndarray:
    """``x_label`` (0 / 1 / 2) of each interaction ``(user[k], item[k])``, per user as the module docstring says.
    Deterministic: the rows must come in one canonical order (the exporter sorts them by user, then item)."""
    report = report or ExportReport()
    rng = np.random.default_rng(options.seed)
    _, valid_share, test_share = options.split
    label = np.zeros(len(user), dtype=np.int64)
    cold = np.zeros(num_items, dtype=bool)
    cold[rng.choice(num_items, round(options.cold_item_ratio * num_items), replace=False)] = True
    report.cold_items = int(cold.sum())
    held_cold = cold[item]
    label[held_cold] = np.where(rng.random(int(held_cold.sum())) < valid_share / (valid_share + test_share), 1, 2)

    warm = np.flatnonzero(~held_cold)
    tiebreak = rng.random(len(warm)) if not options.chronological else item[warm]
    primary = np.zeros(len(warm)) if not options.chronological else timestamp[warm]
    order = warm[np.lexsort((tiebreak, primary, user[warm]))]  # by user, then time (or a shuffle)
    counts = np.bincount(user[order], minlength=int(user.max()) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(order)) - starts[user[order]]
    n = counts[user[order]]
    held = np.floor(n * (valid_share + test_share) + 1e-9).astype(np.int64)
    n_valid = np.floor(held * valid_share / (valid_share + test_share) + 1e-9).astype(np.int64)
    n_test = held - n_valid
    few = (n_valid < 1) | (n_test < 1)
    n_valid = np.where(few, np.where(n >= 3, 1, 0), n_valid)
    n_test = np.where(few, np.where(n >= 3, 1, 0), n_test)
    n_train = n - n_valid - n_test
    label[order] = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2))
    report.users_all_train = int(((counts > 0) & (counts < 3)).sum())
    return label


def export_amazon(fmt: str, meta_path: str | Path, reviews_path: str | Path, out: str | Path,
                  images_dir: str | Path | None = None, name: str | None = None,
                  options: ExportOptions | None = None, features: FeatureOptions | None = FeatureOptions()
                  ) -> ExportReport:
    """Amazon Reviews metadata + reviews (2014 / 2018 / 2023, ``.gz`` or plain) -> the MMRec folder ``out``. Reviews
    of items not in the metadata are dropped; an item's image is ``<images_dir>/<ASIN>.jpg`` when it decodes. Bad
    input (a missing file, an unknown format, a meta file of another format, no review read) is a ``ValueError``;
    ``features=None`` writes no feature files."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown Amazon format {fmt!r} (choose {' | '.join(FORMATS)})")
    for what, path in (("metadata file", meta_path), ("reviews file", reviews_path)):
        if not Path(path).is_file():
            raise ValueError(f"{what} {path} not found")
    if images_dir is not None and not Path(images_dir).is_dir():
        raise ValueError(f"images folder {images_dir} not found")
    check_output(out)
    looks_like = format_mismatch(meta_path, fmt)
    if looks_like:
        raise ValueError(f"{meta_path} does not read as format {fmt} metadata: it looks like format {looks_like}")
    records = read_meta(meta_path, fmt, LoadReport())
    if not records:
        raise ValueError(f"no product read from {meta_path} as format {fmt}")
    report = ExportReport()
    interactions = list(_reviews(reviews_path, fmt, records, report))
    if not interactions:
        raise ValueError(f"no review of a product in the metadata read from {reviews_path} as format {fmt} "
                         f"({report.review_lines} lines, {report.malformed_reviews} malformed)")
    catalog = None
    if features is not None:
        reviewed = {i.item for i in interactions}
        records = {a: r for a, r in records.items() if a in reviewed}
        images, _ = image_files(records, str(images_dir) if images_dir else None)
        catalog = Catalog([to_product(r, [], 0, images.get(a)) for a, r in records.items()], name=Path(out).name)
    return export_mmrec(interactions, catalog, out, name, options, features, report)


def _reviews(path: str | Path, fmt: str, known: dict, report: ExportReport) -> Iterator[Interaction]:
    for review in read_records(path, REVIEW_PARSERS[fmt], "review"):
        report.review_lines += 1
        if review is None:
            report.malformed_reviews += 1
        elif review.item not in known:
            report.reviews_unknown_item += 1
        else:
            yield Interaction(review.user, review.item, review.timestamp, review.rating)


def _earliest(interactions: Iterable[Interaction], report: ExportReport) -> dict[tuple[str, str], Interaction]:
    """One interaction per (user, item): the earliest (the first read on a tie); the others are counted."""
    first: dict[tuple[str, str], Interaction] = {}
    for inter in interactions:
        key = (inter.user, inter.item)
        seen = first.get(key)
        if seen is not None:
            report.duplicates += 1
        if seen is None or inter.timestamp < seen.timestamp:
            first[key] = inter
    return first


def _item_features(catalog: Catalog | None, items: list[str], options: FeatureOptions) -> dict:
    """``image`` / ``text`` float32 ``[items, d]`` in ``items`` order and their ``mask`` (a dict of bool arrays)."""
    from ..features import build_image_encoder, build_text_encoder, extract_features

    if catalog is None:
        raise ValueError("features need the items' content (a catalog)")
    missing = [i for i in items if i not in catalog.index_of]
    if missing:
        raise ValueError(f"{len(missing)} items without content in the catalog, e.g. {missing[:3]}")
    ordered = Catalog([catalog.products[catalog.index_of[i]] for i in items], name=catalog.name, root=catalog.root)
    extractors = {"image": {"model_name": options.image_model}, "text": {"model_name": options.text_model},
                  "device": options.device}
    feats = extract_features(ordered, build_image_encoder(extractors), build_text_encoder(extractors),
                             options.cache_dir)
    return {"image": feats.image.numpy(), "text": feats.text.numpy(),
            "mask": {"image": feats.image_mask.numpy(), "text": feats.text_mask.numpy()}}


def _write_mapping(path: Path, header: tuple[str, str], ids: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows((original, k) for k, original in enumerate(ids))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
