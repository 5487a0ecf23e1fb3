from .bpr import BPRLoss, embedding_norm, squared_norm
from .infonce import InfoNCELoss

__all__ = ["BPRLoss", "InfoNCELoss", "embedding_norm", "squared_norm"]
