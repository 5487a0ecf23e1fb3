"""gnn-mmsearch: multimodal product search with graph neural networks."""
import warnings

with warnings.catch_warnings():  # torch_geometric's import-time torch.jit.script deprecation notice
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    from .data import Catalog, Edge, Interaction, Product
    from .models import EncoderConfig, MultimodalGraphEncoder

__version__ = "0.1.0"
__all__ = ["Catalog", "Edge", "Interaction", "Product", "EncoderConfig", "MultimodalGraphEncoder", "__version__"]
