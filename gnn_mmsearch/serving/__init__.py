"""Serving a saved search run over HTTP: a FastAPI app (JSON API + web page), ``gnn-mmsearch serve``."""
from .app import create_app, warm_up

__all__ = ["create_app", "warm_up"]
