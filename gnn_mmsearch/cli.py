"""``gnn-mmsearch`` command line: ``run`` (Hydra), ``search`` and ``explain`` (from a saved run), ``report``,
``download-images``."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

USAGE = """usage: gnn-mmsearch COMMAND [ARGS]

commands:
  run [HYDRA OVERRIDES]   run a job into a run directory (-m: a sweep). task=search (default): catalog, features,
                          graph encoder, index, ranking, evaluation (e.g. model.gnn.layers=0); task=recommend:
                          a top-N recommender under the MMRec protocol (e.g. task=recommend data=mmrec_baby)
  search [QUERY] [--image PATH] [--product ID] [--history IDS [--decay D]] [--batch FILE]
         [--run DIR] [-k K] [--mmr-lambda L] [--filter F] [--user ID] [--explain-scores]
                          answer a query from a saved run (default: the newest search run under ./runs)
  report PATH [PATH ...] [--out DIR] [--metrics M ...]
                          aggregate multirun directories: table (markdown + CSV, mean ± std over seeds) and plots
  explain [QUERY] [--image PATH] [--product ID] [--result ID] [--run DIR] [-k K] [--out PNG]
                          why a result comes up: modality shares and neighbour contributions, as text and a PNG
  download-images SOURCE --out DIR [--format 2014|2018|2023] [--workers N] [--timeout S] [--retries N]
                          fetch product images (SOURCE: an Amazon catalog dir or meta file), resumable, with a report
"""
SEARCH_EPILOG = ("An empty result set (e.g. a filter nothing matches) prints 'no results' and exits 0. An empty "
                 "query, an unknown product id, a history without a known id, an unreadable image or batch file or "
                 "a malformed filter print a one-line message and exit 2.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return _run(rest)
    if command == "search":
        return _search(rest)
    if command == "report":
        return _report(rest)
    if command == "explain":
        return _explain(rest)
    if command == "download-images":
        return _download_images(rest)
    print(f"gnn-mmsearch: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _run(overrides: list[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path="pkg://gnn_mmsearch.conf", config_name="config")
    def _job(cfg: DictConfig) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        from .config import ConfigError
        from .jobs import run_job
        try:
            metrics = run_job(cfg, HydraConfig.get().runtime.output_dir)
        except (ConfigError, OSError) as err:
            print(f"gnn-mmsearch run: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return metrics[cfg.optimized_metric] if cfg.get("optimized_metric") else None  # what a sweeper optimises

    with contextlib.ExitStack() as stack:
        if os.environ.get("RANK", "0") != "0":  # torchrun's other ranks write no run directory (rank 0 does)
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="gnn-mmsearch-rank-"))
            overrides = [*overrides, f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]
        argv, sys.argv = sys.argv, [sys.argv[0], *overrides]  # Hydra reads its overrides from sys.argv
        try:
            _job()
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 1
        finally:
            sys.argv = argv
    return 0


def _newest_run() -> Path | None:
    from .run_dir import newest_run

    run = newest_run("search")
    return run.path if run is not None else None


def _search(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch search", description="Search the catalog of a saved run.",
                                     epilog=SEARCH_EPILOG)
    parser.add_argument("query", nargs="?", help="text query")
    parser.add_argument("--image", help="image query (a file path); with a text query, both are combined")
    parser.add_argument("--product", help="find products bought with this product id")
    parser.add_argument("--history", help="a user's history: product ids, oldest first, comma-separated; finds "
                        "products near their mean vector (history items excluded, unknown ids skipped)")
    parser.add_argument("--decay", type=float, help="with --history: the i-th most recent item weighs DECAY**i")
    parser.add_argument("--batch", type=Path, help="file with one text query per line (blank lines skipped), "
                        "answered in one batch")
    parser.add_argument("--run", type=Path, help="run directory (default: the newest under ./runs)")
    parser.add_argument("-k", type=int, default=10, help="number of results")
    parser.add_argument("--mmr-lambda", type=float, help="MMR trade-off in [0, 1] (1 = relevance only)")
    parser.add_argument("--filter", help='e.g. "category=Phones;price<=100;in_stock"')
    parser.add_argument("--user", help="personalize the ranking stages for this user id (runs with rerank=rules|"
                        "lambdamart|ranksvm|personalized; a user without history gets the unpersonalized ranking)")
    parser.add_argument("--explain-scores", action="store_true", help="show each ranking stage's score per result")
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def fail(msg: str) -> int:
        print(f"gnn-mmsearch search: {msg}", file=sys.stderr)
        return 2

    modes = [name for name, given in (("--product", ns.product is not None), ("--history", ns.history is not None),
                                      ("--batch", ns.batch is not None),
                                      ("a text or image query", ns.query is not None or ns.image is not None))
             if given]
    if not modes:
        return fail("give a text query, --image PATH or --product ID, or --history IDS or --batch FILE")
    if len(modes) > 1:
        return fail(f"{modes[0]} cannot be combined with {modes[1]}")
    if ns.decay is not None and ns.history is None:
        return fail("--decay needs --history")
    if ns.user is not None and ns.batch is not None:
        return fail("--user cannot be combined with --batch")
    if ns.k < 1:
        return fail("-k must be at least 1")
    if ns.mmr_lambda is not None and not 0 <= ns.mmr_lambda <= 1:
        return fail("--mmr-lambda must be between 0 and 1")
    run_dir = ns.run or _newest_run()
    if run_dir is None:
        return fail("no saved search run found under ./runs: run `gnn-mmsearch run` first or pass --run DIR")

    if ns.batch is not None:
        try:
            queries = [line.strip() for line in ns.batch.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            return fail(f"cannot read batch file {ns.batch}: {getattr(err, 'strerror', None) or err}")
        if not queries:
            return fail(f"batch file {ns.batch} has no queries")

    from .index import Filter
    from .search import Searcher, format_hits
    try:
        flt = Filter.parse(ns.filter) if ns.filter else None
        searcher = Searcher.from_run(run_dir)
        if ns.batch is not None:
            answers = list(zip(queries, searcher.search_batch(queries, k=ns.k, filter=flt, mmr_lambda=ns.mmr_lambda)))
        else:
            history = [i.strip() for i in ns.history.split(",") if i.strip()] if ns.history is not None else None
            answers = [(None, searcher.search(text=ns.query, image=ns.image, product=ns.product, history=history,
                                              k=ns.k, filter=flt, mmr_lambda=ns.mmr_lambda, decay=ns.decay,
                                              user=ns.user))]
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        return fail(err.args[0] if err.args else str(err))
    empty = "no results" + (f": no product left after --filter {ns.filter!r}" if ns.filter else "")
    print(f"run: {run_dir}")
    for query, hits in answers:
        shown = format_hits(hits, empty, ns.explain_scores)
        print(shown if query is None else f'\nsearch "{query}":\n{shown}')
    return 0


def _report(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch report", description="Aggregate multirun directories.")
    parser.add_argument("paths", nargs="+", type=Path, help="multirun (or run) directories, searched recursively")
    parser.add_argument("--out", type=Path, help="output directory (default: <first path>/report)")
    parser.add_argument("--metrics", nargs="+", help="table columns (default: main retrieval metrics, epochs, train_s)")
    ns = parser.parse_args(args)
    from .report import write_report
    try:
        written = write_report(ns.paths, ns.out, ns.metrics)
    except FileNotFoundError as err:
        print(f"gnn-mmsearch report: {err}", file=sys.stderr)
        return 2
    print(written["markdown"].read_text())
    print("\n".join(f"{name}: {path}" for name, path in written.items()))
    return 0


def _explain(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch explain", description="Explain why a result comes up.")
    parser.add_argument("query", nargs="?", help="text query")
    parser.add_argument("--image", help="image query (a file path)")
    parser.add_argument("--product", help="product query: a product id")
    parser.add_argument("--result", help="product id to explain (default: the top hit)")
    parser.add_argument("--run", type=Path, help="run directory (default: the newest under ./runs)")
    parser.add_argument("-k", type=int, default=5, help="neighbours to show")
    parser.add_argument("--out", type=Path, help="PNG to write (default: explain_<result>.png)")
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if ns.query is None and ns.image is None and ns.product is None:
        print("gnn-mmsearch explain: give a text query, --image PATH or --product ID", file=sys.stderr)
        return 2
    run_dir = ns.run or _newest_run()
    if run_dir is None:
        print("gnn-mmsearch explain: no saved search run found under ./runs: pass --run DIR", file=sys.stderr)
        return 2

    from .explain import explain
    try:
        ex = explain(run_dir, query=ns.query, product_id=ns.result, image=ns.image, product=ns.product, k=ns.k)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        print(f"gnn-mmsearch explain: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(f"run: {run_dir}\n{ex.to_text()}")
    print(f"picture: {ex.plot(ns.out or Path(f'explain_{ex.product_id}.png'))}")
    return 0


def _download_images(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch download-images",
                                     description="Download product images to DIR/<id>.jpg (existing files are kept).")
    parser.add_argument("source", type=Path, help="a catalog directory built from Amazon data, or an Amazon meta file")
    parser.add_argument("--out", type=Path, required=True, help="image directory (then data.images_dir=DIR)")
    parser.add_argument("--format", choices=["2014", "2018", "2023"], help="the meta file's format (for a file)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent downloads")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--retries", type=int, default=3, help="retries on timeouts, 5xx and truncated bodies")
    parser.add_argument("--report", type=Path, help="JSON report (default: DIR/download_report.json)")
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from .data.download import catalog_image_urls, download_images, meta_image_urls
    from ._atomic import write_json
    if ns.source.is_dir():
        items = catalog_image_urls(ns.source)
    elif ns.source.is_file() and ns.format:
        items = meta_image_urls(ns.source, ns.format)
    else:
        reason = "--format is needed for a meta file" if ns.source.is_file() else "no such file or directory"
        print(f"gnn-mmsearch download-images: {ns.source}: {reason}", file=sys.stderr)
        return 2
    try:
        report = download_images(items, ns.out, ns.workers, ns.timeout, max(0, ns.retries))
    except FileNotFoundError as err:
        print(f"gnn-mmsearch download-images: {err}", file=sys.stderr)
        return 2
    path = write_json(ns.report or ns.out / "download_report.json", report.as_dict())
    failed = ", ".join(f"{reason}={n}" for reason, n in report.failed.items()) or "none"
    print(f"downloaded {report.downloaded}, skipped {report.skipped} (already on disk), "
          f"failed {sum(report.failed.values())} ({failed})\nreport: {path}")
    return 0
