"""The three public Amazon Reviews formats: streaming line readers and one record parser per format.

Every parser maps a raw metadata line to a :class:`MetaRecord` and a raw review line to a :class:`ReviewRecord`,
or raises ``ValueError`` / ``TypeError`` (the caller counts the line as malformed).

- ``2014`` (McAuley): ``meta_<Cat>.json.gz`` lines are Python literals (``ast.literal_eval``), links under
  ``related`` (``also_bought`` / ``also_viewed`` / ``bought_together``), image ``imUrl``; reviews
  ``reviews_<Cat>_5.json.gz`` (``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``).
- ``2018``: JSON lines with ``also_buy`` / ``also_view``, ``imageURLHighRes`` / ``imageURL``; reviews as 2014.
- ``2023`` (McAuley-Lab): ``meta_<Cat>.jsonl`` keyed by ``parent_asin``, ``images`` (list of dicts),
  ``bought_together``, ``store``; reviews ``<Cat>.jsonl`` (``user_id``, ``parent_asin``, ``rating``,
  ``timestamp`` in milliseconds).
"""
from __future__ import annotations

import ast
import gzip
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

FORMATS = ("2014", "2018", "2023")
MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError)  # what parsing a malformed line raises
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_AST_NODE = re.compile(r"<ast\.(\w+) object at 0x[0-9a-fA-F]+>")
_PRICE = re.compile(r"^\$?\s*(\d[\d,]*(?:\.\d+)?)(?:\s*-\s*\$?\s*\d[\d,]*(?:\.\d+)?)?$")


@dataclass
class MetaRecord:
    """One product as read from a metadata line, before de-duplication and link filtering."""

    asin: str
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    category: list[str] = field(default_factory=list)
    price: float | None = None
    price_unparsed: bool = False  # a non-empty price that is not a number or range
    image_url: str | None = None
    links: dict[str, list[str]] = field(default_factory=dict)  # edge type -> linked asins
    rating: float | None = None  # the metadata's own average rating (2023), used when there are no reviews
    rating_count: int | None = None


@dataclass
class ReviewRecord:
    user: str
    item: str
    timestamp: float  # unix seconds
    rating: float | None


def open_lines(path: str | Path) -> Iterator[bytes]:
    """The raw lines of a ``.gz`` (by suffix) or plain file, read lazily; the reader decodes each one, so a line
    that is not UTF-8 is one malformed line."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        yield from f


def clean_text(value) -> str | None:
    """HTML entities unescaped, tags removed, whitespace collapsed; lists joined by spaces; ``None`` when empty."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if v is not None)
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    text = _SPACE.sub(" ", _TAG.sub(" ", html.unescape(value))).strip()
    return text or None


def parse_price(value) -> tuple[float | None, bool]:
    """``(price, unparsed)``: ``"$12.99"`` -> 12.99, a range ``"$5 - $10"`` -> its lower end, ``""`` -> ``None``;
    a number that is not a price (NaN, infinite, negative) is unparsed."""
    if value is None or value == "":
        return None, False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value), False) if math.isfinite(value) and value >= 0 else (None, True)
    match = _PRICE.match(str(value).strip())
    if not match:
        return None, True
    return float(match.group(1).replace(",", "")), False


def category_path(values) -> list[str]:
    """A category path: entries cleaned, sentences and markup debris dropped, repeated neighbours merged."""
    path: list[str] = []
    for value in values or []:
        name = clean_text(value) if isinstance(value, str) else None
        if name and len(name) <= 60 and not name.endswith(".") and (not path or name != path[-1]):
            path.append(name)
    return path


def _ids(values) -> list[str]:
    if isinstance(values, str):
        values = [values]
    return [str(v) for v in values or [] if v]


def _required(d: dict, key: str) -> str:
    value = d.get(key)
    if value is None or value == "":
        raise ValueError(f"record without {key!r}")
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string, got {type(value).__name__} {str(value)[:40]}")
    return value


def _record(asin: str, *, title, description, brand, categories, price, image_url, links) -> MetaRecord:
    amount, unparsed = parse_price(price)
    return MetaRecord(asin=asin, title=clean_text(title), description=clean_text(description), brand=clean_text(brand),
                      category=category_path(categories), price=amount, price_unparsed=unparsed,
                      image_url=image_url or None, links={t: _ids(v) for t, v in links.items() if v})


def _mapping(line: str, literal: bool) -> dict:
    """A JSON (or, with ``literal``, a Python-literal) object; never ``eval``."""
    try:
        d = ast.literal_eval(line.strip()) if literal else json.loads(line)
    except (SyntaxError, RecursionError) as err:
        raise ValueError(f"not a Python literal: {err}") from None
    except ValueError as err:
        if not literal:
            raise
        # literal_eval names the offending node as "<ast.Call object at 0x...>": say what it is instead
        raise ValueError("not a Python literal: " + _AST_NODE.sub(r"\1 expression", str(err))) from None
    if not isinstance(d, dict):
        raise TypeError(f"a record must be an object, not {type(d).__name__}")
    return d


def meta_2014(line: str) -> MetaRecord:
    d = _mapping(line, literal=True)
    related = d.get("related") or {}
    categories = (d.get("categories") or [[]])[0]
    return _record(_required(d, "asin"), title=d.get("title"), description=d.get("description"),
                   brand=d.get("brand"), categories=categories, price=d.get("price"), image_url=d.get("imUrl"),
                   links={"also_buy": related.get("also_bought"), "also_view": related.get("also_viewed"),
                          "bought_together": related.get("bought_together")})


def meta_2018(line: str) -> MetaRecord:
    d = _mapping(line, literal=False)
    images = d.get("imageURLHighRes") or d.get("imageURL") or []
    return _record(_required(d, "asin"), title=d.get("title"), description=d.get("description"),
                   brand=d.get("brand"), categories=d.get("category"), price=d.get("price"),
                   image_url=images[0] if images else None,
                   links={"also_buy": d.get("also_buy"), "also_view": d.get("also_view")})


def meta_2023(line: str) -> MetaRecord:
    d = _mapping(line, literal=False)
    images = d.get("images") or []
    first = images[0] if images else {}
    record = _record(_required(d, "parent_asin"), title=d.get("title"), description=d.get("description"),
                     brand=d.get("store"), categories=[d.get("main_category"), *(d.get("categories") or [])],
                     price=d.get("price"), image_url=first.get("hi_res") or first.get("large") or first.get("thumb"),
                     links={"bought_together": d.get("bought_together")})
    record.rating = float(d["average_rating"]) if d.get("average_rating") is not None else None
    record.rating_count = int(d["rating_number"]) if d.get("rating_number") is not None else None
    return record


def _rating(value) -> float | None:
    return None if value is None else float(value)


def review_2014_2018(line: str) -> ReviewRecord:
    try:
        d = _mapping(line, literal=False)
    except ValueError:  # some 2014 review dumps are Python literals too
        d = _mapping(line, literal=True)
    return ReviewRecord(_required(d, "reviewerID"), _required(d, "asin"), float(d.get("unixReviewTime") or 0),
                        _rating(d.get("overall")))


def review_2023(line: str) -> ReviewRecord:
    d = _mapping(line, literal=False)
    return ReviewRecord(_required(d, "user_id"), d.get("parent_asin") or _required(d, "asin"),
                        float(d.get("timestamp") or 0) / 1000.0, _rating(d.get("rating")))


META_PARSERS: dict[str, Callable[[str], MetaRecord]] = {"2014": meta_2014, "2018": meta_2018, "2023": meta_2023}
REVIEW_PARSERS: dict[str, Callable[[str], ReviewRecord]] = {
    "2014": review_2014_2018, "2018": review_2014_2018, "2023": review_2023}


def format_mismatch(path: str | Path, fmt: str, lines: int = 50) -> str | None:
    """The format the metadata file ``path`` looks like when none of its first ``lines`` lines parses as ``fmt``
    but some do as another (the one whose parser finds the most: ids, titles, images, links); else ``None``."""
    sample = []
    for raw in open_lines(path):
        if raw.strip():
            sample.append(raw.decode("utf-8", errors="replace"))
        if len(sample) >= lines:
            break
    scores = {}
    for name, parse in META_PARSERS.items():
        scores[name] = 0
        for line in sample:
            try:
                r = parse(line)
            except MALFORMED:
                continue
            scores[name] += 1 + bool(r.title) + bool(r.image_url) + bool(r.links)
    best = max(scores, key=scores.get)
    return best if scores[fmt] == 0 and scores[best] > 0 else None
