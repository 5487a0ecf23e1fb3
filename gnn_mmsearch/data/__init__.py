from . import amazon  # noqa: F401  (registers the amazon catalog source)
from .catalog import EDGE_TYPES, MODALITIES, Catalog, Edge, Interaction, Product
from .sources import CATALOG_SOURCES, CatalogSource, cached_catalog, load_catalog
from .splits import EdgeSplit, split_edges, split_products
from .synthetic import SyntheticConfig, generate

__all__ = ["EDGE_TYPES", "MODALITIES", "Catalog", "Edge", "Interaction", "Product", "CATALOG_SOURCES",
           "CatalogSource", "cached_catalog", "load_catalog", "EdgeSplit", "split_edges", "split_products",
           "SyntheticConfig", "generate"]
