"""Load test of ``gnn-mmsearch serve``: the real server in its own process on loopback, ``--requests`` requests from
``--concurrency`` concurrent clients (httpx, asyncio), a fixed mix of queries and malformed requests.

Mix (shuffled with ``--seed``): text queries (words of catalog titles), product queries ("bought with"), filtered
text queries (a category and a price bound), text queries with MMR, and about 5% malformed requests: bad JSON, a body
over the server's 16 MiB limit, a non-image upload, an unknown product id. Each kind must get its own status (200, or
the 4xx it deserves); anything else, a transport error included, counts as an error. After the load, ``/health`` must
still answer. Latency is per request as the client sees it (queueing at the server included), p50 / p99 by kind and
overall; throughput is requests over the wall time of the whole load.

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py --run runs/<time>     # default: the newest search run
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

from gnn_mmsearch._atomic import atomic_write
from gnn_mmsearch.run_dir import newest_run

HUGE_BODY = b" " * (17 * 2**20)  # over the server's 16 MiB body limit; one copy shared by those requests
MIX = {"text": 0.45, "product": 0.25, "filtered": 0.17, "mmr": 0.08,
       "bad_json": 0.0125, "huge_body": 0.0125, "not_an_image": 0.0125, "unknown_id": 0.0125}
EXPECTED = {"text": 200, "product": 200, "filtered": 200, "mmr": 200,
            "bad_json": 400, "huge_body": 413, "not_an_image": 400, "unknown_id": 404}


def start_server(run: Path, port: int, timeout: float) -> subprocess.Popen:
    """``gnn-mmsearch serve`` in a subprocess, returned once ``/health`` answers."""
    proc = subprocess.Popen([sys.executable, "-m", "gnn_mmsearch", "serve", "--run", str(run), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the server did not answer within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plan(n: int, base: str, seed: int) -> list[tuple[str, dict]]:
    """``n`` requests ``(kind, httpx request kwargs)`` in the ``MIX`` proportions, shuffled."""
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as http:
        categories = [c["name"] for c in http.get("/categories").json()["categories"]]
        seen = [http.get("/search", params={"text": c, "k": 50}).json()["results"] for c in categories]
    hits = [h for results in seen for h in results]
    words = sorted({w for h in hits for w in (h["title"] or "").lower().split() if w.isalpha()})
    ids = sorted({h["id"] for h in hits})

    def text() -> str:
        return " ".join(rng.sample(words, rng.randint(1, 3)))

    def request(kind: str) -> dict:
        if kind == "text":
            return {"method": "GET", "url": "/search", "params": {"text": text(), "k": 10}}
        if kind == "product":
            return {"method": "GET", "url": "/search", "params": {"product": rng.choice(ids), "k": 10}}
        if kind == "filtered":
            return {"method": "GET", "url": "/search", "params": {
                "text": text(), "k": 10, "filter": f"category={rng.choice(categories)};price<={rng.randint(20, 120)}"}}
        if kind == "mmr":
            return {"method": "GET", "url": "/search", "params": {"text": text(), "k": 10,
                                                                  "mmr_lambda": rng.choice([0.3, 0.5, 0.7])}}
        if kind == "bad_json":
            return {"method": "POST", "url": "/search", "content": b'{"text": "mug", "k": ',
                    "headers": {"content-type": "application/json"}}
        if kind == "huge_body":
            return {"method": "POST", "url": "/search", "content": HUGE_BODY,
                    "headers": {"content-type": "application/json"}}
        if kind == "not_an_image":
            return {"method": "POST", "url": "/search", "files": {"image": ("notes.txt", b"plain text", "text/plain")}}
        return {"method": "GET", "url": "/search", "params": {"product": f"NO-SUCH-{rng.randint(0, 10**6)}"}}

    counts = {kind: round(share * n) for kind, share in MIX.items()}
    counts["text"] += n - sum(counts.values())
    kinds = [kind for kind, c in counts.items() for _ in range(c)]
    rng.shuffle(kinds)
    return [(kind, request(kind)) for kind in kinds]


async def load(base: str, requests: list[tuple[str, dict]], concurrency: int) -> tuple[list[dict], float]:
    """Send ``requests`` from ``concurrency`` workers; per request: kind, status (None: transport error), seconds."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    done: list[dict] = []

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            kind, kwargs = queue.get_nowait()
            start = time.perf_counter()
            try:
                status = (await http.request(**kwargs)).status_code
            except httpx.HTTPError as err:
                status = None
                print(f"{kind}: {type(err).__name__}: {err}", file=sys.stderr)
            done.append({"kind": kind, "status": status, "s": time.perf_counter() - start})

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return done, time.perf_counter() - start


def summarize(done: list[dict], wall: float) -> dict:
    def stats(rows: list[dict]) -> dict:
        ms = 1e3 * np.array([r["s"] for r in rows])
        return {"requests": len(rows), "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1), "mean_ms": round(float(ms.mean()), 1)}

    by_kind = defaultdict(list)
    for r in done:
        by_kind[r["kind"]].append(r)
    errors = [r for r in done if r["status"] != EXPECTED[r["kind"]]]
    return {"requests": len(done), "wall_s": round(wall, 2), "throughput_rps": round(len(done) / wall, 1),
            "errors": len(errors), "error_kinds": sorted({f"{r['kind']}:{r['status']}" for r in errors}),
            "latency": stats(done), "latency_ok_queries": stats([r for r in done if EXPECTED[r["kind"]] == 200]),
            "by_kind": {kind: {**stats(rows), "status": EXPECTED[kind]} for kind, rows in sorted(by_kind.items())}}


def markdown(result: dict) -> str:
    lines = [f"# serve load test: {result['requests']} requests, {result['concurrency']} concurrent", "",
             f"run `{result['run']}` ({result['products']} products), {result['machine']}", "",
             f"throughput **{result['throughput_rps']} req/s**, p50 **{result['latency']['p50_ms']} ms**, "
             f"p99 **{result['latency']['p99_ms']} ms**, errors **{result['errors']}**, "
             f"health after the load: {result['health_after']}", "",
             "| kind | expected status | requests | p50 ms | p99 ms | mean ms |", "|---|---|---|---|---|---|"]
    lines += [f"| {kind} | {s['status']} | {s['requests']} | {s['p50_ms']} | {s['p99_ms']} | {s['mean_ms']} |"
              for kind, s in result["by_kind"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="search run to serve (default: the newest under ./runs)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds for the server to come up")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"),
                        help="JSON result; the markdown table goes beside it (.md)")
    args = parser.parse_args()
    run = args.run or getattr(newest_run("search"), "path", None)
    if run is None:
        raise SystemExit("no search run under ./runs: pass --run DIR")

    loadavg = os.getloadavg()[0]  # other work on the machine skews the figures: recorded with them
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(run, port, args.startup_timeout)
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            products = http.get("/health").json()["products"]
        requests = plan(args.requests, base, args.seed)
        done, wall = asyncio.run(load(base, requests, args.concurrency))
        health = httpx.get(f"{base}/health", timeout=60).status_code
    finally:
        server.terminate()
        server.wait(60)
    result = {"run": str(run), "products": products, "concurrency": args.concurrency, "seed": args.seed,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {loadavg:.1f} before the test, "
                         f"server OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
              **summarize(done, wall), "health_after": health}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(result, indent=1) + "\n")
    atomic_write(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    print(f"written: {args.out}, {args.out.with_suffix('.md')}")
    if result["errors"] or health != 200:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
