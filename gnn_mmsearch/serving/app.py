"""The HTTP API and the web page over one loaded :class:`~gnn_mmsearch.search.Searcher`.

    app = create_app(Searcher.from_run("runs/2026-11-24_03-48-27"))
    uvicorn.run(app, port=8000)                       # or: gnn-mmsearch serve --run runs/...

``/search`` and ``/explain`` take their parameters from the query string (GET), a JSON object (POST
``application/json``) or form fields with file uploads (POST ``multipart/form-data``), checked by the same
:mod:`gnn_mmsearch.query` functions as the command line, so a mistake gets the CLI's message, as ``{"error": ...}``
with a 4xx code. The searcher runs in a worker thread, one request at a time (a lock: the tokenizer, the models'
train/eval switch and the explainer's occlusions are not thread-safe); everything else stays concurrent.
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..query import QueryError, check_image, check_video, parse_explain_query, parse_query
from ..search import Hit, Searcher

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 2**20  # bytes; a larger request gets 413


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise QueryError(f"{name} must be a string, got {value!r}")
    return value


def _ids(name: str, value: Any) -> str | list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return _text(name, value)


def _int(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(_text(name, value).strip())
    except (QueryError, ValueError):
        raise QueryError(f"{name} must be an integer, got {value!r}") from None


def _float(name: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        try:
            out = float(_text(name, value).strip())
        except (QueryError, ValueError):
            raise QueryError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise QueryError(f"{name} must be a finite number, got {value!r}")
    return out


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    flag = _text(name, value).strip().lower()
    if flag not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
        raise QueryError(f"{name} must be true or false, got {value!r}")
    return flag in ("", "1", "true", "yes", "on")  # a bare ?explain means true


# parameter -> its converter; file field -> its check (an uploaded file is saved, checked, and handed on as a path,
# so another kind of query file is one entry here and a keyword of parse_query / Searcher.search)
SEARCH_PARAMS = {"text": _text, "product": _text, "history": _ids, "decay": _float, "user": _text, "filter": _text,
                 "k": _int, "mmr_lambda": _float, "explain": _bool, "frames": _int}
SEARCH_FILES: dict[str, Callable[[Path, str], None]] = {"image": check_image, "video": check_video}
EXPLAIN_PARAMS = {"text": _text, "product": _text, "result": _text, "k": _int}
EXPLAIN_FILES: dict[str, Callable[[Path, str], None]] = {"image": check_image}


def create_app(searcher: Searcher, max_body: int = MAX_BODY) -> FastAPI:
    """The app: JSON API (``/search``, ``/explain``, ``/products/{id}``, ``/products/{id}/image``,
    ``/categories``, ``/health``) and the web page at ``/``. ``max_body``: the largest request body, in bytes."""
    app = FastAPI(title="gnn-mmsearch", docs_url=None, redoc_url=None, openapi_url=None)  # docs would need a CDN
    service = _Service(searcher)
    catalog = searcher.catalog

    @app.api_route("/search", methods=["GET", "POST"])
    async def search(request: Request) -> dict:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="gnn-mmsearch-upload-") as tmp:
            params, files, names = await _read_query(request, SEARCH_PARAMS, SEARCH_FILES, Path(tmp))
            scores = params.pop("explain", False)
            query = parse_query(**params, **files)
            hits = await service.run(searcher.search, **query.search_kwargs())
        return {"query": {**params, **names}, "results": [_hit(searcher, h, scores) for h in hits],
                "took_ms": round(1000 * (time.perf_counter() - start), 2)}

    @app.api_route("/explain", methods=["GET", "POST"])
    async def explain(request: Request) -> dict:
        with tempfile.TemporaryDirectory(prefix="gnn-mmsearch-upload-") as tmp:
            params, files, names = await _read_query(request, EXPLAIN_PARAMS, EXPLAIN_FILES, Path(tmp))
            result = params.pop("result", None)
            parse_explain_query(**params, **files)
            ex = await service.run(service.explain, result, **params, **files)
        return {"query": {**params, **names}, **_explanation(searcher, ex)}

    @app.get("/products/{product_id}")
    async def product(product_id: str, request: Request) -> dict:
        _no_params(request)
        p = catalog.products[_row(searcher, product_id)]
        record = {k: v for k, v in vars(p).items() if k != "image_path"}
        return {**record, "image": _image_url(searcher, product_id)}

    @app.get("/products/{product_id}/image")
    async def product_image(product_id: str, request: Request) -> FileResponse:
        _no_params(request)
        path = catalog.image_file(catalog.products[_row(searcher, product_id)])
        if path is None or not path.is_file():
            raise HTTPException(404, f"product {product_id!r} has no image")
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    @app.get("/categories")
    async def categories(request: Request) -> dict:
        _no_params(request)
        return service.categories

    @app.get("/health")
    async def health(request: Request) -> dict:
        _no_params(request)
        return service.health

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(QueryError)
    async def query_error(request: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        return JSONResponse({"error": f"{'.'.join(map(str, first.get('loc', ())))}: {first.get('msg', 'invalid')}"},
                            400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error"}, 500)

    app.add_middleware(_BodyLimit, limit=max_body)
    app.add_middleware(_RequestLog)  # outermost: every request is logged, 413s included
    return app


def warm_up(searcher: Searcher) -> None:
    """Build the feature extractors now, so the first query is not the one that waits for them."""
    searcher.encoder.query_features(text="warm up")
    searcher.encoder.feature_extractor("image")


class _Service:
    """The loaded searcher behind a lock, and what the app computes once from it."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        self._lock = threading.Lock()
        self._features = None
        self.categories = _categories(searcher)
        self.health = _health(searcher)

    async def run(self, fn: Callable, *args, **kwargs):
        """``fn`` in a worker thread under the lock; the searcher's mistakes become 400 (bad value) or 404
        (unknown id) with the message the CLI prints."""
        def locked():
            with self._lock:
                return fn(*args, **kwargs)
        try:
            return await run_in_threadpool(locked)
        except KeyError as err:
            raise HTTPException(404, err.args[0] if err.args else str(err)) from None
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

    def explain(self, result: str | None, text: str | None = None, image: Path | None = None,
                product: str | None = None, k: int = 5):
        """:func:`gnn_mmsearch.explain.explain` with the catalog's features loaded once (call under the lock)."""
        from ..explain import catalog_features, explain

        if self._features is None:
            self._features = catalog_features(self.searcher)
        return explain(self.searcher, text, result, image, product, k, self._features)


async def _read_query(request: Request, accepted: dict[str, Callable], checks: dict[str, Callable], tmp: Path
                      ) -> tuple[dict[str, Any], dict[str, Path], dict[str, str]]:
    """A request's parameters converted by ``accepted``, its files saved under ``tmp`` and checked by ``checks``
    (by field: the saved file and the name the client gave it). Unknown or repeated parameters are a
    :class:`QueryError`."""
    raw: list[tuple[str, Any]] = list(request.query_params.multi_items())
    uploads: list[tuple[str, UploadFile]] = []
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise QueryError(f"bad JSON body: {err}") from None
            if not isinstance(body, dict):
                raise QueryError("the JSON body must be an object of query parameters")
            raw += [(k, v) for k, v in body.items() if v is not None]
        elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            for key, value in (await request.form()).multi_items():
                if key in checks and (value == "" or isinstance(value, UploadFile) and not value.filename
                                      and not value.size):
                    continue  # a form's file input left empty
                (uploads if isinstance(value, UploadFile) else raw).append((key, value))
        elif await request.body():
            raise HTTPException(415, f"unsupported content type {kind!r}: send application/json or "
                                     "multipart/form-data")
    seen = Counter(key for key, _ in raw + uploads)
    for key, n in seen.items():
        if key not in accepted and key not in checks:
            raise QueryError(f"unknown parameter {key!r}; accepted: {', '.join([*accepted, *checks])}")
        if n > 1:
            raise QueryError(f"parameter {key!r} given {n} times")
    params = {key: accepted[key](key, value) for key, value in raw if key in accepted}
    for key, value in raw:
        if key in checks:
            raise QueryError(f"{key} must be an uploaded file (multipart/form-data)")
    files, names = {}, {}
    for key, upload in uploads:
        if key not in checks:
            raise QueryError(f"{key} is not a file parameter; files: {', '.join(checks)}")
        name = Path(upload.filename or key).name
        path = tmp / f"{key}{Path(name).suffix[:16]}"
        path.write_bytes(await upload.read())
        await run_in_threadpool(checks[key], path, name)
        files[key], names[key] = path, name
    return params, files, names


def _no_params(request: Request) -> None:
    if request.query_params:
        raise QueryError(f"unknown parameter {next(iter(request.query_params))!r}; this route takes none")


def _row(searcher: Searcher, product_id: str) -> int:
    row = searcher.catalog.index_of.get(product_id)
    if row is None:
        raise HTTPException(404, f"unknown product id {product_id!r}")
    return row


def _image_url(searcher: Searcher, product_id: str) -> str | None:
    path = searcher.catalog.image_file(searcher.catalog.products[searcher.catalog.index_of[product_id]])
    return f"/products/{quote(product_id, safe='')}/image" if path is not None and path.is_file() else None


def _hit(searcher: Searcher, hit: Hit, stages: bool) -> dict:
    out = {"id": hit.id, "title": hit.title, "price": hit.price, "category": hit.category,
           "image": _image_url(searcher, hit.id), "score": hit.score}
    return {**out, "stages": hit.stages} if stages else out


def _explanation(searcher: Searcher, ex) -> dict:
    shares = ex.modality_weights
    return {
        "result": {"id": ex.product_id, "title": ex.title, "image": _image_url(searcher, ex.product_id)},
        "score": ex.score, "content_score": ex.content_score, "graph_contribution": ex.graph_contribution,
        "modalities": [{"name": m, "share": shares[m], "attribution": ex.modality_attribution[m],
                        "fusion_weight": (ex.fusion_weights or {}).get(m)} for m in shares],
        "neighbours": [{"id": n.id, "title": n.title, "image": _image_url(searcher, n.id),
                        "contribution": n.contribution} for n in ex.neighbours],
    }


def _categories(searcher: Searcher) -> dict:
    """Top-level categories with their subcategories and product counts, and the catalog's price range."""
    products = searcher.catalog.products
    tops = Counter(p.category[0] for p in products if p.category)
    subs = Counter(tuple(p.category[:2]) for p in products if len(p.category) > 1)
    prices = [p.price for p in products if p.price is not None]
    return {"categories": [{"name": top, "count": n,
                            "children": [{"name": sub, "count": m} for (t, sub), m in sorted(subs.items()) if t == top]}
                           for top, n in sorted(tops.items())],
            "price": {"min": min(prices), "max": max(prices)} if prices else None}


def _health(searcher: Searcher) -> dict:
    cfg, pipeline = searcher.encoder.config, searcher.pipeline
    return {"status": "ok", "run": str(searcher.run_dir) if searcher.run_dir is not None else None,
            "products": len(searcher.catalog),
            "model": {"fusion": cfg.fusion, "modalities": list(cfg.modalities), "gnn_layers": cfg.gnn_layers,
                      "conv": cfg.conv, "dim": cfg.out_dim,
                      "image_model": cfg.features.get("image", {}).get("model_name"),
                      "text_model": cfg.features.get("text", {}).get("model_name"),
                      "relevance_head": searcher.hybrid is not None},
            "ranking": {"scorer": type(pipeline.scorer).__name__ if pipeline.scorer is not None else None,
                        "personalized": pipeline.personalizer is not None, "mmr_lambda": pipeline.mmr_lambda,
                        "candidates": pipeline.candidates}}


# ------------------------------------------------------------------------------------------------ middleware
class _BodyLimit:
    """413 for a body over ``limit`` bytes, declared or streamed. The body is read and dropped (up to
    ``4 * limit``) before answering, so the client, still sending, gets the answer rather than a reset."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(receive, send, more=True)
        received, started = 0, False

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge(message.get("more_body", False))
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge as err:
            if started:
                raise
            await self._refuse(receive, send, more=err.more)

    async def _refuse(self, receive, send, more: bool) -> None:
        drained = 0
        while more and drained <= 4 * self.limit:
            message = await receive()
            drained += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
        body = json.dumps({"error": f"request body too large: the limit is {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *([(b"connection", b"close")] if more else [])]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    def __init__(self, more: bool):
        super().__init__("request body too large")
        self.more = more


class _RequestLog:
    """One log line per request: method, path, status, latency."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def tracked(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, 1000 * (time.perf_counter() - start))
