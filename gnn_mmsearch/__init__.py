"""gnn-mmsearch: multimodal product search with graph neural networks."""
from .data import Catalog, Edge, Interaction, Product
from .models import EncoderConfig, MultimodalGraphEncoder

__version__ = "0.1.0"
__all__ = ["Catalog", "Edge", "Interaction", "Product", "EncoderConfig", "MultimodalGraphEncoder", "__version__"]
