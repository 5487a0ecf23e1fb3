"""Attribute filters (category, price range, stock) and their evaluation as boolean masks over index labels."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

SYNTAX = ("clauses separated by ';': category=NAME[|NAME...], price<=X, price>=X, price=X, "
          "in_stock, !in_stock, in_stock=true|false")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


@dataclass(frozen=True)
class Filter:
    """Constraints an item must meet; unset fields do not constrain.

    ``categories`` matches an item when any name equals any level of its category path, ignoring case (so
    ``"phones"`` matches ``["Electronics", "Phones", "Smartphones"]``); several names are OR-ed. Price bounds are inclusive. Items with an
    unknown price fail any price bound, items with unknown stock fail ``in_stock`` either way.
    """

    categories: tuple[str, ...] | None = None
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.categories, str):
            object.__setattr__(self, "categories", (self.categories,))
        elif self.categories is not None:
            object.__setattr__(self, "categories", tuple(self.categories))
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"empty price range: price_min={self.price_min} > price_max={self.price_max}")

    @property
    def is_empty(self) -> bool:
        return self.categories is None and self.price_min is None and self.price_max is None and self.in_stock is None

    @classmethod
    def parse(cls, text: str) -> "Filter":
        """Parse ``"category=Phones|Tablets;price>=10;price<=100;in_stock"`` (see ``SYNTAX``)."""
        fields: dict = {}

        def bad(clause: str, why: str) -> ValueError:
            return ValueError(f"bad filter clause {clause!r} in {text!r}: {why}. Accepted syntax: {SYNTAX}")

        def put(clause: str, key: str, value) -> None:
            if key in fields:
                raise bad(clause, f"{key} given twice")
            fields[key] = value

        for raw in text.split(";"):
            clause = raw.strip()
            if not clause:
                continue
            low = clause.replace(" ", "").lower()
            if low in ("in_stock", "!in_stock"):
                put(clause, "in_stock", low == "in_stock")
            elif low.startswith("in_stock="):
                flag = low.split("=", 1)[1]
                if flag not in _TRUE | _FALSE:
                    raise bad(clause, f"in_stock must be true or false, not {flag!r}")
                put(clause, "in_stock", flag in _TRUE)
            elif low.startswith("category="):
                names = [n.strip() for n in clause.split("=", 1)[1].split("|")]
                if not all(names):
                    raise bad(clause, "empty category name")
                put(clause, "categories", tuple(names))
            elif low.startswith("price"):
                op = next((o for o in ("<=", ">=", "=") if low[5:].startswith(o)), None)
                if op is None:
                    raise bad(clause, "price needs <=, >= or =")
                try:
                    value = float(low[5 + len(op):])
                except ValueError:
                    raise bad(clause, f"{low[5 + len(op):]!r} is not a number") from None
                if not math.isfinite(value):
                    raise bad(clause, "price must be finite")
                if op in ("<=", "="):
                    put(clause, "price_max", value)
                if op in (">=", "="):
                    put(clause, "price_min", value)
            else:
                raise bad(clause, "unknown field")
        return cls(**fields)


class AttributeStore:
    """Item attributes as columns indexed by label, plus an inverted category index for fast masks."""

    def __init__(self) -> None:
        self.price = np.empty(0, np.float64)  # NaN = unknown
        self.in_stock = np.empty(0, np.int8)  # -1 = unknown
        self.category: list[tuple[str, ...]] = []
        self._members: dict[str, set[int]] = {}
        self._member_arrays: dict[str, np.ndarray] = {}

    def _grow(self, n: int) -> None:
        if n > len(self.price):
            cap = max(n, 2 * len(self.price))
            self.price = np.concatenate([self.price, np.full(cap - len(self.price), np.nan)])
            self.in_stock = np.concatenate([self.in_stock, np.full(cap - len(self.in_stock), -1, np.int8)])
        self.category.extend(() for _ in range(n - len(self.category)))

    def set(self, labels: Sequence[int], attributes: Iterable[dict | None]) -> None:
        """Replace the attributes of ``labels`` (``None`` or missing keys mean unknown / no category)."""
        self._grow(max(labels, default=-1) + 1)
        for label, attrs in zip(labels, attributes):
            self.clear([label])
            attrs = attrs or {}
            price = attrs.get("price")
            self.price[label] = np.nan if price is None else float(price)
            stock = attrs.get("in_stock")
            self.in_stock[label] = -1 if stock is None else int(bool(stock))
            path = attrs.get("category") or ()
            path = (path,) if isinstance(path, str) else tuple(str(c) for c in path)
            self.category[label] = path
            for name in {c.casefold() for c in path}:
                self._members.setdefault(name, set()).add(label)
                self._member_arrays.pop(name, None)

    def clear(self, labels: Iterable[int]) -> None:
        """Forget the attributes of ``labels``."""
        for label in labels:
            if label >= len(self.category):
                continue
            for name in {c.casefold() for c in self.category[label]}:
                self._members[name].discard(label)
                self._member_arrays.pop(name, None)
                if not self._members[name]:
                    del self._members[name]
            self.category[label] = ()
            self.price[label] = np.nan
            self.in_stock[label] = -1

    def _labels_in(self, name: str) -> np.ndarray:
        name = name.casefold()
        arr = self._member_arrays.get(name)
        if arr is None:
            members = self._members.get(name, ())
            arr = self._member_arrays[name] = np.fromiter(members, np.int64, len(members))
        return arr

    def mask(self, f: Filter, n: int) -> np.ndarray:
        """Boolean mask over labels ``0..n-1`` of the items that satisfy ``f``."""
        self._grow(n)
        mask = np.ones(n, bool)
        if f.categories is not None:
            hit = np.zeros(n, bool)
            for name in f.categories:
                hit[self._labels_in(name)] = True
            mask &= hit
        with np.errstate(invalid="ignore"):
            if f.price_min is not None:
                mask &= self.price[:n] >= f.price_min
            if f.price_max is not None:
                mask &= self.price[:n] <= f.price_max
        if f.in_stock is not None:
            mask &= self.in_stock[:n] == int(f.in_stock)
        return mask

    def state(self, n: int) -> dict:
        """Sections for the first ``n`` labels."""
        self._grow(n)
        return {"attr.price": self.price[:n], "attr.in_stock": self.in_stock[:n],
                "attr.category": [list(c) for c in self.category[:n]]}

    @classmethod
    def from_state(cls, price: np.ndarray, in_stock: np.ndarray, category: list[list[str]]) -> "AttributeStore":
        store = cls()
        n = len(category)
        store._grow(n)
        store.price[:n], store.in_stock[:n] = price, in_stock
        for label, path in enumerate(category):
            store.category[label] = tuple(path)
            for name in {c.casefold() for c in path}:
                store._members.setdefault(name, set()).add(label)
        return store
