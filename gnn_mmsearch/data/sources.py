"""Catalog sources: ``data.source`` names a registered source and the other ``data.*`` keys are its options.

    load_catalog({"source": "synthetic", "num_products": 500}, cache_root)

Sources with a :meth:`CatalogSource.cache_key` share one cache: the catalog is built once, atomically, into
``<cache_root>/<key>`` and loaded from there afterwards. A new source is a class registered with
``@CATALOG_SOURCES.register(name)`` whose constructor takes its options.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .._atomic import build_once
from .._registry import Registry
from .catalog import Catalog

log = logging.getLogger(__name__)

CATALOG_SOURCES: Registry[type["CatalogSource"]] = Registry("catalog source")


class CatalogSource:
    """Either cached (``cache_key`` returns a folder name, ``build`` saves the catalog into a folder) or read as is
    (``cache_key`` returns ``None`` and ``load`` reads it)."""

    def cache_key(self) -> str | None:
        return None

    def build(self, root: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} is not cached")

    def load(self) -> Catalog:
        raise NotImplementedError(f"{type(self).__name__} is cached: use cached_catalog")


@CATALOG_SOURCES.register("directory")
@dataclass
class DirectorySource(CatalogSource):
    """A catalog already saved in the on-disk format of ``catalog.py`` (``data=directory data.path=DIR``)."""

    path: str

    def load(self) -> Catalog:
        return Catalog.load(Path(self.path).expanduser())


def cached_catalog(source: CatalogSource, cache_root: str | Path) -> Catalog:
    """``source``'s catalog: from ``cache_root`` when it was built before, else built there first."""
    key = source.cache_key()
    if key is None:
        return source.load()
    root = build_once(Path(cache_root).expanduser() / key, source.build, done="catalog.json")
    log.info("loading catalog from %s", root)
    return Catalog.load(root)


def load_catalog(data: Mapping, cache_root: str | Path) -> Catalog:
    """The catalog a ``data`` config describes (``source`` + the source's options)."""
    options = {k: v for k, v in data.items() if k != "source"}
    return cached_catalog(CATALOG_SOURCES.create(data["source"], **options), cache_root)
