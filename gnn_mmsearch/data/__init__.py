from . import amazon, mmrec_synthetic  # noqa: F401  (register the amazon catalog and mmrec_synthetic sources)
from .catalog import EDGE_TYPES, MODALITIES, Catalog, Edge, Interaction, Product
from .sources import CATALOG_SOURCES, CatalogSource, cached_catalog, load_catalog
from .mmrec import INTERACTION_SOURCES, interaction_source, load_interactions
from .splits import EdgeSplit, split_edges, split_products
from .synthetic import SyntheticConfig, generate

__all__ = ["EDGE_TYPES", "MODALITIES", "Catalog", "Edge", "Interaction", "Product", "CATALOG_SOURCES",
           "CatalogSource", "cached_catalog", "load_catalog", "INTERACTION_SOURCES", "interaction_source",
           "load_interactions", "EdgeSplit", "split_edges", "split_products",
           "SyntheticConfig", "generate"]
