"""Result re-ranking."""
from .mmr import MMRReranker, mmr

__all__ = ["MMRReranker", "mmr"]
