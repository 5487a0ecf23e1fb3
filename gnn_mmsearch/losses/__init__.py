from .infonce import InfoNCELoss

__all__ = ["InfoNCELoss"]
