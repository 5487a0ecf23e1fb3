"""The HTTP API (gnn_mmsearch/serving) on the small real run (conftest.py): every endpoint answers what the Searcher and
the explainer answer, every bad request gets a JSON 4xx with the CLI's message, and concurrent requests are safe."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import live_server
from gnn_mmsearch.cli import main
from gnn_mmsearch.explain import explain
from gnn_mmsearch.index import Filter
from gnn_mmsearch.search import Searcher
from gnn_mmsearch.serving import create_app

LIMIT = 1_000_000  # bytes: the body limit of the app under test


@pytest.fixture(scope="module")
def searcher(run_dir) -> Searcher:
    return Searcher.from_run(run_dir)


@pytest.fixture(scope="module")
def client(searcher) -> TestClient:
    return TestClient(create_app(searcher, max_body=LIMIT), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def image(searcher) -> Path:
    return next(searcher.catalog.image_file(p) for p in searcher.catalog.products if p.image_path)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


# ------------------------------------------------------------------------------------------------ endpoints
def test_health(client, searcher, run_dir):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["run"] == str(run_dir)
    assert body["products"] == len(searcher.catalog) == 200
    assert body["model"]["fusion"] == searcher.encoder.config.fusion
    assert body["model"]["relevance_head"] is (searcher.hybrid is not None)


def test_text_search_is_what_the_searcher_serves(client, searcher):
    response = client.get("/search", params={"text": "wireless mouse", "k": 7, "explain": "true"})
    expected = searcher.search(text="wireless mouse", k=7)
    body = response.json()
    assert body["query"] == {"text": "wireless mouse", "k": 7}
    assert [h["id"] for h in body["results"]] == [h.id for h in expected]
    for got, hit in zip(body["results"], expected):
        p = searcher.catalog.products[searcher.catalog.index_of[hit.id]]
        assert got["title"] == p.title and got["price"] == p.price and got["category"] == hit.category
        assert got["score"] == pytest.approx(hit.score, abs=1e-6)
        assert got["stages"] == pytest.approx(hit.stages, abs=1e-6)  # what --explain-scores shows
    assert "stages" not in client.get("/search", params={"text": "wireless mouse"}).json()["results"][0]


@pytest.mark.parametrize("params, kwargs", [
    ({"product": "{p0}", "k": 5}, {"product": "{p0}", "k": 5}),
    ({"history": "{p0},{p1}", "decay": 0.5, "k": 5}, {"history": ["{p0}", "{p1}"], "decay": 0.5, "k": 5}),
    ({"text": "mug", "user": "{user}", "k": 5}, {"text": "mug", "user": "{user}", "k": 5}),
    ({"text": "mug", "mmr_lambda": 0.3, "k": 6}, {"text": "mug", "mmr_lambda": 0.3, "k": 6}),
    ({"text": "mug", "filter": "category={cat};price<=40"},
     {"text": "mug", "filter": Filter.parse("category={cat};price<=40")}),
], ids=["product", "history-decay", "user", "mmr", "filter"])
def test_every_query_kind_matches_the_searcher(client, searcher, params, kwargs):
    catalog = searcher.catalog
    values = {"p0": catalog.ids[3], "p1": catalog.ids[4], "user": catalog.interactions[0].user,
              "cat": catalog.products[0].category[0]}

    def fill(value):
        if isinstance(value, str):
            return value.format(**values)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, Filter):
            return Filter.parse(f"category={values['cat']};price<=40")
        return value

    params, kwargs = {k: fill(v) for k, v in params.items()}, {k: fill(v) for k, v in kwargs.items()}
    expected = [h.id for h in searcher.search(**kwargs)]
    assert expected and ids(client.get("/search", params=params)) == expected
    assert ids(client.post("/search", json=params)) == expected  # a JSON body: the same parameters
    if "history" in kwargs:
        assert ids(client.post("/search", json={**params, "history": kwargs["history"]})) == expected


def test_image_upload_and_text_plus_image(client, searcher, image):
    upload = {"image": ("photo.png", image.read_bytes(), "image/png")}
    response = client.post("/search", files=upload, data={"k": "5"})
    assert ids(response) == [h.id for h in searcher.search(image=image, k=5)]
    assert response.json()["query"] == {"k": 5, "image": "photo.png"}
    both = client.post("/search", files=upload, data={"text": "coffee mug", "k": "5"})
    assert ids(both) == [h.id for h in searcher.search(text="coffee mug", image=image, k=5)]
    assert ids(both) != ids(client.get("/search", params={"text": "coffee mug", "k": 5}))
    # a form's file input left empty is no image (browsers send filename="", some clients no filename)
    text_only = ids(client.get("/search", params={"text": "coffee mug"}))
    empty = client.post("/search", files={"image": ("", b"", "application/octet-stream")}, data={"text": "coffee mug"})
    assert ids(empty) == text_only
    body = (b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\ncoffee mug\r\n--b\r\n'
            b'Content-Disposition: form-data; name="image"; filename=""\r\n'
            b'Content-Type: application/octet-stream\r\n\r\n\r\n--b--\r\n')
    browser = client.post("/search", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert ids(browser) == text_only


def test_result_images_are_served_from_the_catalog(client, searcher):
    results = client.get("/search", params={"text": "mug", "k": 40}).json()["results"]
    with_image = [r for r in results if r["image"]]
    without = [r for r in results if not r["image"]]
    assert with_image and without  # the synthetic catalog has products without an image
    for r in with_image[:3]:
        p = searcher.catalog.products[searcher.catalog.index_of[r["id"]]]
        assert r["image"] == f"/products/{r['id']}/image"
        response = client.get(r["image"])
        assert response.status_code == 200 and response.content == searcher.catalog.image_file(p).read_bytes()
        assert response.headers["content-type"].startswith("image/")
    missing = client.get(f"/products/{without[0]['id']}/image")
    assert missing.status_code == 404 and missing.json() == {"error": f"product {without[0]['id']!r} has no image"}


def test_product_record(client, searcher):
    p = next(p for p in searcher.catalog.products if p.image_path)
    body = client.get(f"/products/{p.id}").json()
    assert body == {"id": p.id, "title": p.title, "description": p.description, "brand": p.brand,
                    "category": p.category, "price": p.price, "rating": p.rating, "popularity": p.popularity,
                    "image": f"/products/{p.id}/image"}


def test_categories_for_the_page(client, searcher):
    body = client.get("/categories").json()
    products = searcher.catalog.products
    assert sum(c["count"] for c in body["categories"]) == sum(1 for p in products if p.category)
    first = body["categories"][0]
    assert first["count"] == sum(c["count"] for c in first["children"])
    assert body["price"]["max"] == max(p.price for p in products if p.price is not None)


def test_explain_endpoint_is_the_explainers_answer(client, searcher, image):
    result = searcher.search(text="wireless mouse", k=3)[2].id
    body = client.get("/explain", params={"text": "wireless mouse", "result": result, "k": 3}).json()
    ex = explain(searcher, query="wireless mouse", product_id=result, k=3)
    assert body["result"]["id"] == result and body["score"] == pytest.approx(ex.score, abs=1e-5)
    assert {m["name"]: m["share"] for m in body["modalities"]} == pytest.approx(ex.modality_weights, abs=1e-5)
    assert sum(m["share"] for m in body["modalities"]) == pytest.approx(1.0)
    assert [n["id"] for n in body["neighbours"]] == [n.id for n in ex.neighbours]
    assert [n["contribution"] for n in body["neighbours"]] == pytest.approx([n.contribution for n in ex.neighbours],
                                                                             abs=1e-5)
    assert body["graph_contribution"] == pytest.approx(ex.graph_contribution, abs=1e-5)
    # without a result: the top hit; an uploaded image; a product query
    assert client.get("/explain", params={"text": "wireless mouse"}).json()["result"]["id"] == \
        explain(searcher, query="wireless mouse").product_id
    upload = client.post("/explain", files={"image": ("q.png", image.read_bytes(), "image/png")},
                         data={"result": result})
    assert upload.json()["score"] == pytest.approx(explain(searcher, image=image, product_id=result).score, abs=1e-5)
    other = searcher.catalog.ids[7]
    by_product = client.get("/explain", params={"product": other, "result": result}).json()
    assert by_product["score"] == pytest.approx(explain(searcher, product=other, product_id=result).score, abs=1e-5)


def test_page_and_its_assets_need_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load from a CDN


# --------------------------------------------------------------------------------------------- bad requests
def cli_message(capsys, run_dir: Path, *args: str) -> str:
    capsys.readouterr()
    assert main(["search", *args, "--run", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("gnn-mmsearch search: ")
    return err.strip().removeprefix("gnn-mmsearch search: ")


@pytest.mark.parametrize("params, cli_args, status", [
    ({}, [], 400),
    ({"text": ""}, [""], 400),
    ({"text": "   "}, ["   "], 400),
    ({"product": "NO-SUCH-ID"}, ["--product", "NO-SUCH-ID"], 404),
    ({"history": "NO-SUCH,NOR-THIS"}, ["--history", "NO-SUCH,NOR-THIS"], 404),
    ({"history": " , "}, ["--history", " , "], 400),
    ({"text": "mug", "filter": "price<>3"}, ["mug", "--filter", "price<>3"], 400),
    ({"text": "mug", "filter": "category="}, ["mug", "--filter", "category="], 400),
    ({"text": "mug", "k": 0}, ["mug", "-k", "0"], 400),
    ({"text": "mug", "mmr_lambda": 1.5}, ["mug", "--mmr-lambda", "1.5"], 400),
    ({"text": "mug", "mmr_lambda": -0.1}, ["mug", "--mmr-lambda", "-0.1"], 400),
    ({"text": "mug", "product": "P00001"}, ["mug", "--product", "P00001"], 400),
    ({"text": "mug", "decay": 0.5}, ["mug", "--decay", "0.5"], 400),
    ({"history": "{p0}", "decay": 0}, ["--history", "{p0}", "--decay", "0"], 400),
], ids=["nothing", "empty-text", "blank-text", "unknown-product", "unknown-history", "empty-history", "bad-filter",
        "empty-category", "k0", "lambda-high", "lambda-low", "text-and-product", "decay-alone", "decay-zero"])
def test_bad_request_gets_the_cli_message(client, searcher, run_dir, capsys, params, cli_args, status):
    p0 = searcher.catalog.ids[0]
    params = {k: str(v).format(p0=p0) for k, v in params.items()}
    response = client.get("/search", params=params)
    assert response.status_code == status
    assert response.json() == {"error": cli_message(capsys, run_dir, *(a.format(p0=p0) for a in cli_args))}
    assert ids(client.get("/search", params={"text": "mug", "k": 2}))  # still serving


def test_non_image_upload_gets_the_cli_message(client, run_dir, capsys, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("not a picture")
    monkeypatch.chdir(tmp_path)
    response = client.post("/search", files={"image": ("notes.txt", b"not a picture", "text/plain")})
    assert response.status_code == 400
    assert response.json() == {"error": cli_message(capsys, run_dir, "--image", "notes.txt")}
    assert response.json()["error"] == "cannot read query image notes.txt: not a readable image file"
    # a truncated PNG is no image either
    bad = client.post("/search", files={"image": ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(300), "image/png")})
    assert bad.status_code == 400 and "cannot read query image x.png" in bad.json()["error"]


@pytest.mark.parametrize("request_kwargs, status, message", [
    ({"method": "POST", "url": "/search", "content": b"{bad", "headers": {"content-type": "application/json"}}, 400,
     "bad JSON body: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ({"method": "POST", "url": "/search", "json": ["mug"]}, 400, "the JSON body must be an object of query parameters"),
    ({"method": "POST", "url": "/search", "json": {"text": "mug", "k": "five"}}, 400, "k must be an integer, got 'five'"),
    ({"method": "POST", "url": "/search", "json": {"text": 3}}, 400, "text must be a string, got 3"),
    ({"method": "POST", "url": "/search", "content": b"x" * (LIMIT + 1),
      "headers": {"content-type": "application/json"}}, 413, f"request body too large: the limit is {LIMIT} bytes"),
    ({"method": "POST", "url": "/search", "content": b"text=mug", "headers": {"content-type": "text/plain"}}, 415,
     "unsupported content type 'text/plain': send application/json or multipart/form-data"),
    ({"method": "GET", "url": "/search?text=mug&colour=red"}, 400,
     "unknown parameter 'colour'; accepted: text, product, history, decay, user, filter, k, mmr_lambda, explain, "
     "frames, image, video"),
    ({"method": "GET", "url": "/search?text=mug&k=2&k=3"}, 400, "parameter 'k' given 2 times"),
    ({"method": "GET", "url": "/search?text=mug&mmr_lambda=nan"}, 400, "mmr_lambda must be a finite number, got 'nan'"),
    ({"method": "GET", "url": "/search?text=mug&explain=maybe"}, 400, "explain must be true or false, got 'maybe'"),
    ({"method": "GET", "url": "/search?image=photo.png"}, 400, "image must be an uploaded file (multipart/form-data)"),
    ({"method": "POST", "url": "/search", "files": {"photo": ("a.png", b"x", "image/png")}}, 400,
     "unknown parameter 'photo'; accepted: text, product, history, decay, user, filter, k, mmr_lambda, explain, "
     "frames, image, video"),
    ({"method": "GET", "url": "/explain?text=mug&result=NO-SUCH"}, 404, "unknown product id 'NO-SUCH'"),
    ({"method": "GET", "url": "/explain?result=P00001"}, 400, "empty query: give a text query, an image or a product id"),
    ({"method": "GET", "url": "/explain?text=mug&mmr_lambda=0.5"}, 400,
     "unknown parameter 'mmr_lambda'; accepted: text, product, result, k, image"),
    ({"method": "GET", "url": "/products/NO-SUCH"}, 404, "unknown product id 'NO-SUCH'"),
    ({"method": "GET", "url": "/products/NO-SUCH/image"}, 404, "unknown product id 'NO-SUCH'"),
    ({"method": "GET", "url": "/health?verbose=1"}, 400, "unknown parameter 'verbose'; this route takes none"),
    ({"method": "GET", "url": "/no/such/route"}, 404, "no such route: GET /no/such/route"),
    ({"method": "DELETE", "url": "/search"}, 405, "Method Not Allowed"),
], ids=["bad-json", "json-not-object", "k-not-int", "text-not-str", "huge-body", "content-type", "unknown-param",
        "repeated-param", "nan", "bad-bool", "image-as-text", "unknown-file", "explain-unknown-result",
        "explain-nothing", "explain-unknown-param", "unknown-product", "unknown-product-image", "health-param",
        "unknown-route", "method"])
def test_bad_request_is_a_json_4xx_and_the_server_keeps_serving(client, request_kwargs, status, message):
    response = client.request(**request_kwargs)
    assert response.status_code == status
    assert response.json() == {"error": message}
    assert "Traceback" not in response.text
    assert ids(client.get("/search", params={"text": "mug", "k": 2}))


def test_cli_explain_shares_the_messages(client, run_dir, capsys):
    capsys.readouterr()
    assert main(["explain", "--run", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gnn-mmsearch explain: {client.get('/explain').json()['error']}"


def test_one_log_line_per_request_with_its_latency(client, caplog):
    with caplog.at_level(logging.INFO, logger="gnn_mmsearch.serving"):
        client.get("/search", params={"text": "mug"})
        client.get("/search", params={"k": "0"})
        client.get("/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "gnn_mmsearch.serving.app"]
    assert len(lines) == 3
    for line, start in zip(lines, ("GET /search 200 ", "GET /search 400 ", "GET /health 200 ")):
        assert line.startswith(start) and line.endswith(" ms")
        float(line.split()[-2])


# ------------------------------------------------------------------------------------------------ real server
def test_concurrent_requests_answer_as_sequential_ones(searcher, image):
    """32 requests (text, text + image upload, product, filtered, explain) from 8 threads on the real server give
    exactly the sequential answers."""
    catalog = searcher.catalog
    requests = []
    for i in range(8):
        requests += [("GET", "/search", {"params": {"text": ["wireless mouse", "red wallet", "coffee mug",
                                                            "running shoes"][i % 4], "k": 8, "explain": "1"}}),
                     ("POST", "/search", {"data": {"text": "mug", "k": "6"},
                                          "files": {"image": ("q.png", image.read_bytes(), "image/png")}}),
                     ("GET", "/search", {"params": {"product": catalog.ids[i], "k": 5,
                                                    "filter": f"price<={20 + 10 * i}", "mmr_lambda": 0.5}}),
                     ("GET", "/explain", {"params": {"text": "desk lamp", "result": catalog.ids[i], "k": 3}})]

    def answer(base, req):
        method, path, kwargs = req
        with httpx.Client(base_url=base, timeout=120) as http:
            response = http.request(method, path, **kwargs)
        body = response.json()
        body.pop("took_ms", None)
        return response.status_code, body

    with live_server(create_app(searcher)) as base:
        sequential = [answer(base, r) for r in requests]
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(lambda r: answer(base, r), requests))
    assert all(status == 200 for status, _ in sequential)
    assert concurrent == sequential


def test_the_searcher_serves_one_request_at_a_time(searcher, monkeypatch):
    """Concurrent requests wait for each other at the searcher (its tokenizer, train/eval switch and the explainer's
    fusion weights are not thread-safe), while the server stays concurrent for everything else."""
    search, state = searcher.search, {"inside": 0, "most": 0}

    def watched(**kwargs):
        state["inside"] += 1
        state["most"] = max(state["most"], state["inside"])
        time.sleep(0.05)  # long enough for the other requests to arrive
        try:
            return search(**kwargs)
        finally:
            state["inside"] -= 1

    monkeypatch.setattr(searcher, "search", watched)
    with live_server(create_app(searcher)) as base, ThreadPoolExecutor(8) as pool:
        def get(path, params):
            return httpx.get(base + path, params=params, timeout=60).status_code

        slow = [pool.submit(get, "/search", {"text": t}) for t in ("mug", "lamp", "shoe", "wallet") * 2]
        time.sleep(0.1)
        assert get("/health", {}) == 200
        assert not all(f.done() for f in slow)  # answered while the searches queue (8 x at least 0.05 s)
        assert [f.result() for f in slow] == [200] * 8
    assert state["most"] == 1


def test_body_limit_on_the_real_server(searcher):
    """A body over the limit, declared or streamed in chunks, gets a 413 the client can read; the server goes on."""
    def chunks():
        for _ in range(40):
            yield b"x" * 100_000

    with live_server(create_app(searcher, max_body=LIMIT)) as base, httpx.Client(base_url=base, timeout=60) as http:
        declared = http.post("/search", content=b"x" * (8 * LIMIT), headers={"content-type": "application/json"})
        streamed = http.post("/search", content=chunks(), headers={"content-type": "application/json"})
        upload = http.post("/search", files={"image": ("big.png", b"x" * (3 * LIMIT), "image/png")})
        for response in (declared, streamed, upload):
            assert response.status_code == 413
            assert response.json() == {"error": f"request body too large: the limit is {LIMIT} bytes"}
        assert http.get("/search", params={"text": "mug"}).status_code == 200


def test_serve_command(run_dir, tmp_path, env, capsys):
    """``gnn-mmsearch serve`` in a real process: it answers on the port it was given; a bad --run is one line, exit 2."""
    capsys.readouterr()
    assert main(["serve", "--run", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (f"gnn-mmsearch serve: {tmp_path / 'nowhere'} is not a finished gnn-mmsearch "
                                       "run (no such directory)\n")
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gnn_mmsearch", "serve", "--run", str(run_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.3)
        assert health.json()["run"] == str(run_dir)
        hits = httpx.get(f"http://127.0.0.1:{port}/search", params={"text": "mug", "k": 3}, timeout=60).json()
        assert len(hits["results"]) == 3
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "GET /health 200" in out and "GET /search 200" in out  # the request log
    assert "Traceback" not in out


def test_help_stays_instant():
    code = "import sys; from gnn_mmsearch.cli import main; main(['--help']); print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('fastapi', 'uvicorn', 'torch', 'starlette')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "serve [--run DIR]" in out and out.strip().endswith("[]")
    assert json.loads(out.strip().splitlines()[-1].replace("'", '"')) == []


def test_video_upload_is_searched_like_the_cli(client, searcher, image, tmp_path):
    from PIL import Image
    from test_video import write_mp4

    clip = write_mp4(tmp_path / "clip.mp4", [Image.open(image).convert("RGB")] * 6)
    response = client.post("/search", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")},
                           data={"k": "5", "frames": "3"})
    assert response.status_code == 200, response.text
    assert ids(response) == [h.id for h in searcher.search(video=clip, frames=3, k=5)]
    bad = client.post("/search", files={"video": ("notes.mp4", b"not a video", "video/mp4")})
    assert bad.status_code == 400 and bad.json()["error"].startswith("cannot read query video notes.mp4")
