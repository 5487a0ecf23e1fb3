"""One registry helper for every pluggable component (fusions, convolutions, indexes, recommenders, rankers,
catalog sources), in the spirit of timm's ``register_model`` and PyG's resolvers.

    FUSIONS = Registry("fusion")

    @FUSIONS.register("gated")
    class GatedFusion(nn.Module): ...

    FUSIONS.create("gated", num_modalities, hidden_dim, **cfg.model.fusion_kwargs)

A component registered from outside the package (import its module with ``imports=[my_module]`` on the command
line) is selectable by name like a built-in one.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> classes or factories of one kind of component."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register a class or factory under ``name`` (registering the same object again is a no-op)."""
        def wrap(obj: T) -> T:
            if self._entries.get(name, obj) is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered ({self._entries[name]!r})")
            self._entries[name] = obj
            return obj
        return wrap

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}") from None

    def name_of(self, obj: Any) -> str:
        """The name ``obj`` (a registered class or an instance of one) is registered under."""
        cls = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
        for name, entry in self._entries.items():
            if entry is cls:
                return name
        raise ValueError(f"{cls.__name__} is not a registered {self.kind}")

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming the first keyword ``name``'s constructor does not take."""
        params = inspect.signature(self.get(name)).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in kwargs:
            if key not in named:
                raise ValueError(f"{self.kind} {name!r} takes no option {key!r} (options: {', '.join(named)})")

    def create(self, name: str, *args, **kwargs) -> Any:
        """``registered(*args, **kwargs)``; a keyword the constructor does not take is a one-line ``ValueError``."""
        self.check_kwargs(name, kwargs)
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


def import_modules(names: Iterable[str]) -> None:
    """Import the modules a config lists in ``imports`` (importing them registers their components); a module that
    cannot be imported is a one-line ``ImportError`` naming it."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"imports: cannot import {name!r}: {err}") from None
