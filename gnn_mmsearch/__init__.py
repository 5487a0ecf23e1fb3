"""gnn-mmsearch: multimodal product search with graph neural networks."""
import importlib
import warnings

# torch_geometric's import-time torch.jit.script deprecation notice, wherever PyG is first imported
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

__version__ = "0.1.0"
_LAZY = {"Catalog": ".data", "Edge": ".data", "Interaction": ".data", "Product": ".data",
         "EncoderConfig": ".models", "MultimodalGraphEncoder": ".models"}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    """The public classes, imported on first use: torch and PyG load only when needed (``--help`` stays instant)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'gnn_mmsearch' has no attribute {name!r}")
