"""MMRec interaction files (enoche/MMRec) -> train / valid / test user-item matrices.

``<name>.inter`` is tab-separated with a header naming at least ``userID``, ``itemID`` and ``x_label``
(0 train, 1 valid, 2 test; other columns such as rating or timestamp are ignored). Ids are contiguous integers
from 0, so there are ``max id + 1`` users and items. Optional ``image_feat.npy`` / ``text_feat.npy`` beside the
file hold one feature row per item.

As in MMRec (``filter_out_cod_start_users``), valid and test interactions of users without a training
interaction are dropped (counted as cold-start). Malformed lines and repeated (user, item) pairs are skipped and
counted in :class:`InteractionReport`; repeated pairs keep the first line's split.

``data.source`` of the top-N job names an :data:`INTERACTION_SOURCES` entry and the other ``data.*`` keys are its
options: ``mmrec`` (a ``.inter`` file, ``data.path``) or ``mmrec_synthetic`` (``mmrec_synthetic.py``: made from the
embedded catalog in the cache on first use). :func:`load_interactions` resolves and reads either.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from .._registry import Registry

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}
_COLUMNS = ("userID", "itemID", "x_label")
_SHOWN = 5  # malformed lines logged one by one; the rest are only counted


@dataclass
class InteractionReport:
    lines: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    duplicates: int = 0
    cold_start_users: int = 0
    cold_start_interactions: int = 0
    nonfinite_feature_rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Interactions:
    """Binary ``users x items`` matrices per split, optional item features, and how they were read."""

    name: str
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    item_features: dict[str, np.ndarray]
    fingerprint: str
    report: InteractionReport

    @property
    def num_users(self) -> int:
        return self.train.shape[0]

    @property
    def num_items(self) -> int:
        return self.train.shape[1]

    def split(self, name: str) -> sp.csr_matrix:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
        return getattr(self, name)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.split(s).nnz}" for s in SPLITS)
        return f"Interactions({self.name!r}, users={self.num_users}, items={self.num_items}, {sizes})"


class InteractionSource:
    """Where a ``.inter`` file is (made first when need be), and how it is read."""

    filter_cold_start: bool = True
    item_features: bool = True

    def inter_path(self, cache_root: Path, device: str = "auto") -> Path:
        raise NotImplementedError


INTERACTION_SOURCES: Registry[type[InteractionSource]] = Registry("interaction source")


@INTERACTION_SOURCES.register("mmrec")
@dataclass
class MMRecFile(InteractionSource):
    """An MMRec ``.inter`` file (``data.path``), e.g. MMRec's own or one ``gnn-mmsearch export-mmrec`` wrote."""

    path: str
    filter_cold_start: bool = True  # drop valid/test interactions of users without a training interaction
    item_features: bool = True  # false: read no feature files (the ID-only ablation of the same data)

    def inter_path(self, cache_root: Path, device: str = "auto") -> Path:
        return Path(self.path).expanduser()


def interaction_source(data: Mapping) -> InteractionSource:
    """The source a ``data`` config names (``source`` + its options); a bad option is a one-line ``ValueError``."""
    options = {k: v for k, v in data.items() if k != "source"}
    return INTERACTION_SOURCES.create(data.get("source"), **options)


def load_interactions(data: Mapping, cache_root: str | Path, device: str = "auto") -> Interactions:
    """The interactions a ``data`` config describes (a generated source is made in ``cache_root`` first)."""
    source = interaction_source(data)
    return load_inter(source.inter_path(Path(cache_root).expanduser(), device), source.filter_cold_start,
                      source.item_features)


def load_inter(path: str | Path, filter_cold_start: bool = True, item_features: bool = True) -> Interactions:
    """Read an MMRec ``.inter`` file (and, with ``item_features``, the features beside it); see the module
    docstring."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MMRec interaction file not found: {path}")
    report = InteractionReport()
    users, items, labels = _read_rows(path, report)
    if not users:
        raise ValueError(f"{path}: no valid interaction lines")
    users, items, labels = np.array(users), np.array(items), np.array(labels)
    users, items, labels = _drop_duplicates(users, items, labels, report)
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    if filter_cold_start:
        warm = np.zeros(shape[0], bool)
        warm[users[labels == 0]] = True
        cold = (labels > 0) & ~warm[users]
        report.cold_start_users = int(np.unique(users[cold]).size)
        report.cold_start_interactions = int(cold.sum())
        users, items, labels = users[~cold], items[~cold], labels[~cold]
    mats = {}
    for label, name in enumerate(SPLITS):
        sel = labels == label
        mats[name] = sp.csr_matrix((np.ones(sel.sum(), np.float32), (users[sel], items[sel])), shape=shape)
        report.kept[name] = int(sel.sum())
    features = _read_features(path.parent, shape[1], report) if item_features else {}
    data = Interactions(path.stem, **mats, item_features=features, fingerprint=_fingerprint(path), report=report)
    log.info("%r; skipped %d malformed lines, %d duplicates, %d cold-start interactions (%d users)", data,
             report.malformed, report.duplicates, report.cold_start_interactions, report.cold_start_users)
    return data


def _read_rows(path: Path, report: InteractionReport) -> tuple[list[int], list[int], list[int]]:
    users, items, labels = [], [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks column(s) {missing} (tab-separated, MMRec format)")
        cols = [header.index(c) for c in _COLUMNS]
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            report.lines += 1
            fields = line.rstrip("\r\n").split("\t")
            try:
                user, item, label = (int(fields[c]) for c in cols)
                if user < 0 or item < 0 or label not in (0, 1, 2):
                    raise ValueError("negative id or x_label not in 0/1/2")
            except (ValueError, IndexError) as err:
                report.malformed += 1
                if report.malformed <= _SHOWN:
                    log.warning("%s:%d: malformed line skipped (%s): %r", path.name, lineno, err, line[:80])
                continue
            users.append(user)
            items.append(item)
            labels.append(label)
    return users, items, labels


def _drop_duplicates(users, items, labels, report: InteractionReport):
    _, first = np.unique(np.stack([users, items], 1), axis=0, return_index=True)
    first.sort()
    report.duplicates = int(users.size - first.size)
    return users[first], items[first], labels[first]


def _read_features(root: Path, num_items: int, report: InteractionReport) -> dict[str, np.ndarray]:
    """``image_feat.npy`` / ``text_feat.npy`` when present: ``[num_items, d]`` float32; non-finite rows -> 0."""
    out = {}
    for modality, name in FEATURE_FILES.items():
        file = root / name
        if not file.is_file():
            continue
        feats = np.load(file).astype(np.float32)
        if feats.ndim != 2 or feats.shape[0] != num_items:
            raise ValueError(f"{file}: expected [{num_items}, d] item features, got shape {feats.shape}")
        bad = ~np.isfinite(feats).all(1)
        feats[bad] = 0.0
        report.nonfinite_feature_rows[modality] = int(bad.sum())
        out[modality] = feats
    return out


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
