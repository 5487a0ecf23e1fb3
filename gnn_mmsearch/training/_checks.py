"""A value check shared by the training configs: a bad value is a one-line ``ValueError`` naming ``<prefix>.<field>``."""
from __future__ import annotations


def check_positive(cfg, *names: str, prefix: str = "train") -> None:
    for name in names:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{prefix}.{name} must be > 0, got {getattr(cfg, name)}")

