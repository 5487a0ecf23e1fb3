from .catalog import EDGE_TYPES, Catalog, Edge, Interaction, Product
from .splits import EdgeSplit, split_edges, split_products
from .synthetic import SyntheticConfig, generate, load_or_generate

__all__ = ["EDGE_TYPES", "Catalog", "Edge", "Interaction", "Product", "EdgeSplit", "split_edges", "split_products",
           "SyntheticConfig", "generate", "load_or_generate"]
