"""A value check shared by the training configs: a bad value is a one-line ``ValueError`` naming ``train.<field>``."""
from __future__ import annotations


def check_positive(cfg, *names: str) -> None:
    for name in names:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"train.{name} must be > 0, got {getattr(cfg, name)}")

