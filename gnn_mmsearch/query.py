"""What a search or explain query may be: one validation for the command line and the HTTP API, so the same
mistake gets the same message from both.

    query = parse_query(text="mug", k=5, filter="category=Kitchen;price<=20")   # QueryError on a mistake
    hits = searcher.search(**query.search_kwargs())

Mistakes only the searcher can see (an empty text, an unknown product id, a history without a known id) are raised
by :class:`~gnn_mmsearch.search.Searcher` itself, for every caller alike.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .index.filters import Filter

TEXT_OR_IMAGE = "a text or image query"
CONTENT = "a text, image or video query"


class QueryError(ValueError):
    """A malformed query; the message is one line for the user."""


@dataclass(frozen=True)
class SearchQuery:
    """A checked query; the fields are :meth:`Searcher.search`'s keyword arguments."""

    text: str | None = None
    image: Path | None = None
    product: str | None = None
    history: tuple[str, ...] | None = None
    decay: float | None = None
    user: str | None = None
    k: int = 10
    mmr_lambda: float | None = None
    filter: Filter | None = None
    video: Path | None = None
    frames: int | None = None

    def search_kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_query(text: str | None = None, image: str | Path | None = None, product: str | None = None,
                history: str | Sequence[str] | None = None, decay: float | None = None, user: str | None = None,
                k: int = 10, mmr_lambda: float | None = None, filter: str | None = None,
                batch: bool = False, video: str | Path | None = None, frames: int | None = None) -> SearchQuery:
    """Check a search query. ``history``: product ids, a list or comma-separated; ``filter``: the filter syntax
    (:meth:`Filter.parse`); ``batch``: the caller also has a batch of text queries (the CLI's ``--batch``);
    ``video`` / ``frames``: a video query and its number of keyframes."""
    ids = parse_ids(history) if history is not None else None
    _one_kind({CONTENT: text is not None or image is not None or video is not None,
               "a product id": product is not None, "a history": ids is not None, "a batch file": batch},
              "a text query, an image, a video, a product id or a history")
    if image is not None and video is not None:
        raise QueryError("an image cannot be combined with a video")
    if frames is not None and (video is None or frames < 1):
        raise QueryError("frames needs a video" if video is None else f"frames must be at least 1, got {frames}")
    if decay is not None and ids is None:
        raise QueryError("decay needs a history")
    if user is not None and batch:
        raise QueryError("a user cannot be combined with a batch file")
    if ids is not None and not ids:
        raise QueryError("empty history: give at least one product id")
    check_k(k)
    if mmr_lambda is not None and not 0 <= mmr_lambda <= 1:
        raise QueryError(f"MMR lambda must be between 0 and 1, got {mmr_lambda}")
    from .index.filters import Filter  # numpy: only once the cheap checks pass (argument errors stay instant)

    try:
        parsed = Filter.parse(filter) if filter else None
    except ValueError as err:
        raise QueryError(str(err)) from None
    return SearchQuery(text, Path(image) if image is not None else None, product, ids, decay, user, k, mmr_lambda,
                       parsed, Path(video) if video is not None else None, frames)


def parse_explain_query(text: str | None = None, image: str | Path | None = None, product: str | None = None,
                        k: int = 5) -> None:
    """Check what ``explain`` is asked about: a text and/or image query or a product id; ``k`` neighbours (0: their
    count only)."""
    _one_kind({TEXT_OR_IMAGE: text is not None or image is not None, "a product id": product is not None},
              "a text query, an image or a product id")
    if k < 0:
        raise QueryError(f"k must be at least 0, got {k}")


def parse_ids(ids: str | Sequence[str]) -> tuple[str, ...]:
    """Product ids from a comma-separated string or a list, blanks dropped, order kept."""
    items = ids.split(",") if isinstance(ids, str) else ids
    return tuple(i.strip() for i in items if i.strip())


def check_k(k: int) -> None:
    if k < 1:
        raise QueryError(f"k must be at least 1, got {k}")


def check_image(path: str | Path, name: str | None = None) -> None:
    """Raise :class:`QueryError` unless ``path`` decodes as an image (``name``: what the user calls the file)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
    except FileNotFoundError:
        raise QueryError(f"cannot read query image {name or path}: no such file") from None
    except Exception:  # noqa: BLE001 - any decoder error on an untrusted file means "not an image"
        raise QueryError(f"cannot read query image {name or path}: not a readable image file") from None


def check_video(path: str | Path, name: str | None = None) -> None:
    """Raise :class:`QueryError` unless ``path`` is a video with a frame that decodes."""
    from .features.video import keyframes

    try:
        keyframes(path, 1)
    except ValueError as err:
        raise QueryError(str(err).replace(str(path), name or str(path))) from None


def _one_kind(given: dict[str, bool], choices: str) -> None:
    kinds = [name for name, present in given.items() if present]
    if not kinds:
        raise QueryError(f"empty query: give {choices}")
    if len(kinds) > 1:
        raise QueryError(f"{kinds[0]} cannot be combined with {kinds[1]}")
