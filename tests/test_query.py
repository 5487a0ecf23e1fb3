"""The query checks shared by the CLI and the HTTP API (gnn_mmsearch/query.py)."""
from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest

from gnn_mmsearch.index import Filter
from gnn_mmsearch.query import QueryError, SearchQuery, check_image, parse_explain_query, parse_ids, parse_query
from gnn_mmsearch.search import Searcher


def test_a_query_is_searcher_search_arguments():
    assert {f.name for f in fields(SearchQuery)} == set(inspect.signature(Searcher.search).parameters) - {"self"}
    query = parse_query(text="mug", history=None, k=3, mmr_lambda=0.5, filter="category=Kitchen;price<=20")
    assert query.search_kwargs() == {"text": "mug", "image": None, "product": None, "history": None, "decay": None,
                                     "user": None, "k": 3, "mmr_lambda": 0.5,
                                     "filter": Filter(categories=("Kitchen",), price_max=20.0), "video": None,
                                     "frames": None}
    assert parse_query(history=" P1, ,P2 ,", decay=0.5).history == ("P1", "P2")
    assert parse_query(history=["P1", " P2"]).history == parse_ids("P1,P2") == ("P1", "P2")
    assert parse_query(image="photo.png").image == Path("photo.png")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "empty query: give a text query, an image, a video, a product id or a history"),
    ({"text": "mug", "product": "P1"}, "a text, image or video query cannot be combined with a product id"),
    ({"image": "a.png", "history": "P1"}, "a text, image or video query cannot be combined with a history"),
    ({"product": "P1", "batch": True}, "a product id cannot be combined with a batch file"),
    ({"batch": True, "user": "U1"}, "a user cannot be combined with a batch file"),
    ({"text": "mug", "decay": 0.5}, "decay needs a history"),
    ({"history": ","}, "empty history: give at least one product id"),
    ({"text": "mug", "k": 0}, "k must be at least 1, got 0"),
    ({"text": "mug", "mmr_lambda": float("nan")}, "MMR lambda must be between 0 and 1, got nan"),
    ({"text": "mug", "filter": "colour=red"}, "bad filter clause 'colour=red'"),
])
def test_mistakes(kwargs, message):
    with pytest.raises(QueryError) as info:
        parse_query(**kwargs)
    assert str(info.value).startswith(message)


def test_explain_queries():
    parse_explain_query(text="mug", image="a.png", k=1)
    with pytest.raises(QueryError, match="^empty query: give a text query, an image or a product id$"):
        parse_explain_query()
    with pytest.raises(QueryError, match="^a text or image query cannot be combined with a product id$"):
        parse_explain_query(text="mug", product="P1")
    parse_explain_query(product="P1", k=0)  # k=0: the links are counted, none is measured
    with pytest.raises(QueryError, match="^k must be at least 0, got -1$"):
        parse_explain_query(product="P1", k=-1)


def test_check_image(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    check_image(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:40])
    for name, why in (("notes.txt", "not a readable image file"), ("cut.png", "not a readable image file"),
                      ("missing.png", "no such file")):
        with pytest.raises(QueryError, match=f"^cannot read query image {name}: {why}$"):
            check_image(tmp_path / name, name)
