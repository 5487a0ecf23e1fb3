"""``gnn-mmsearch`` command line: ``run`` (Hydra), ``search``, ``explain`` and ``serve`` (from a saved run),
``report``, ``download-images``, ``export-mmrec``."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

USAGE = """usage: gnn-mmsearch COMMAND [ARGS]

commands:
  run [HYDRA OVERRIDES]   run a job into a run directory (-m: a sweep). task=search (default): catalog, features,
                          graph encoder, index, ranking, evaluation (e.g. model.gnn.layers=0); task=recommend:
                          a top-N recommender under the MMRec protocol (e.g. task=recommend data=mmrec_baby)
  search [QUERY] [--image PATH | --video PATH [--frames N]] [--product ID] [--history IDS [--decay D]]
         [--batch FILE] [--run DIR] [-k K] [--mmr-lambda L] [--filter F] [--user ID] [--explain-scores]
                          answer a query from a saved run (default: the newest search run under ./runs)
  serve [--run DIR] [--host HOST] [--port PORT]
                          an HTTP API (/search, /explain, /products/ID, /health) and a web page at / over a saved run
  report PATH [PATH ...] [--out DIR] [--metrics M ...]
                          aggregate multirun directories: table (markdown + CSV, mean ± std over seeds) and plots
  explain [QUERY] [--image PATH] [--product ID] [--result ID] [--run DIR] [-k K] [--out PNG]
                          why a result comes up: modality shares and neighbour contributions, as text and a PNG
  download-images SOURCE --out DIR [--format 2014|2018|2023] [--workers N] [--timeout S] [--retries N]
                          fetch product images (SOURCE: an Amazon catalog dir or meta file), resumable, with a report
  export-mmrec --format 2014|2018|2023 --meta FILE --reviews FILE --out DIR [--images DIR] [--k-core K]
               [--split 0.8,0.1,0.1] [--seed N] [--chronological] [--cold-items F] [--image-model M]
               [--text-model M] [--device D] [--no-features]
                          Amazon Reviews -> an MMRec dataset folder (.inter, id mappings, item features, masks)
"""
SEARCH_EPILOG = ("An empty result set (e.g. a filter nothing matches) prints 'no results' and exits 0. An empty "
                 "query, an unknown product id, a history without a known id, an unreadable image, video or batch "
                 "file or a malformed filter print a one-line message and exit 2.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"gnn-mmsearch: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(overrides: list[str]) -> int:
    problem = _unwritable_output(overrides)
    if problem:
        print(f"gnn-mmsearch run: {problem}", file=sys.stderr)
        return 2
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path="pkg://gnn_mmsearch.conf", config_name="config")
    def _job(cfg: DictConfig) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        from .config import ConfigError
        from .jobs import run_job
        hydra_cfg = HydraConfig.get()
        try:
            metrics = run_job(cfg, hydra_cfg.runtime.output_dir)
        except (ConfigError, OSError) as err:
            message = _os_error(err, cfg.get("cache_dir")) if isinstance(err, OSError) else str(err)
            print(f"gnn-mmsearch run: {message}", file=sys.stderr)
            _discard_refused(Path(hydra_cfg.runtime.output_dir), hydra_cfg.job.name)
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


def _unwritable_output(overrides: list[str]) -> str | None:
    """Why the run (or, with -m, sweep) directory cannot be made, checked before Hydra makes it; else None."""
    sweep = "-m" in overrides or "--multirun" in overrides
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    given = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=", 1)[0] == key and "=" in o]
    path = Path(given[-1] if given and "${" not in given[-1] else "multirun" if sweep else "runs").expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return f"cannot write the run directory {path}: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write the run directory {path}: permission denied on {existing}"
    return None


def _os_error(err: OSError, cache_dir: str | None) -> str:
    """An ``OSError`` as one line naming the path; paths in the cache say how to move it."""
    if not err.filename:
        return str(err)
    line = f"{err.strerror or err}: {err.filename}"
    if cache_dir and Path(err.filename).resolve().is_relative_to(Path(cache_dir).expanduser().resolve()):
        line += " (the catalog and feature cache: set GNN_MMSEARCH_CACHE or cache_dir= to a writable folder)"
    return line


def _discard_refused(run_dir: Path, job_name: str) -> None:
    """Remove a run directory the job refused to start in when it holds nothing but what Hydra wrote first."""
    hydra_files = {".hydra", f"{job_name}.log"}
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= hydra_files:
        shutil.rmtree(run_dir, ignore_errors=True)


def _newest_run() -> Path | None:
    from .run_dir import newest_run

    run = newest_run("search")
    return run.path if run is not None else None


def _search(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch search", description="Search the catalog of a saved run.",
                                     epilog=SEARCH_EPILOG)
    parser.add_argument("query", nargs="?", help="text query")
    parser.add_argument("--image", help="image query (a file path); with a text query, both are combined")
    parser.add_argument("--video", help="video query (a file path, e.g. a short mp4): its keyframes' mean image "
                        "features, searched as an image query; with a text query, both are combined")
    parser.add_argument("--frames", type=int, help="with --video: keyframes sampled, evenly spread over the clip "
                        "(default 8)")
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

    from .query import check_image, parse_query
    try:
        query = parse_query(ns.query, ns.image, ns.product, ns.history, ns.decay, ns.user, ns.k, ns.mmr_lambda,
                            ns.filter, batch=ns.batch is not None, video=ns.video, frames=ns.frames)
        if query.image is not None:
            check_image(query.image)
    except ValueError as err:
        return fail(str(err))
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

    from .search import Searcher, category_hint, format_hits
    try:
        searcher = Searcher.from_run(run_dir)
        if ns.batch is not None:
            answers = list(zip(queries, searcher.search_batch(queries, k=ns.k, filter=query.filter,
                                                              mmr_lambda=ns.mmr_lambda)))
        else:
            answers = [(None, searcher.search(**query.search_kwargs()))]
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        return fail(err.args[0] if err.args else str(err))
    empty = "no results" + (f": no product left after --filter {ns.filter!r}" if ns.filter else "")
    if query.filter is not None and query.filter.categories and not all(hits for _, hits in answers):
        hint = category_hint(searcher.catalog, query.filter.categories)
        empty += f": {hint}" if hint else ""
    print(f"run: {run_dir}")
    for text, hits in answers:
        shown = format_hits(hits, empty, ns.explain_scores)
        print(shown if text is None else f'\nsearch "{text}":\n{shown}')
    return 0


def _serve(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch serve",
                                     description="Serve a saved search run: a JSON API and a web page at /.")
    parser.add_argument("--run", type=Path, help="run directory (default: the newest under ./runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def fail(msg: str) -> int:
        print(f"gnn-mmsearch serve: {msg}", file=sys.stderr)
        return 2

    run_dir = ns.run or _newest_run()
    if run_dir is None:
        return fail("no saved search run found under ./runs: run `gnn-mmsearch run` first or pass --run DIR")
    try:
        import uvicorn

        from .serving import create_app, warm_up
    except ImportError as err:
        return fail(f"{err}: serving needs the serve extra (pip install 'gnn-mmsearch[serve]')")
    from .search import Searcher
    try:
        searcher = Searcher.from_run(run_dir)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        return fail(err.args[0] if err.args else str(err))
    warm_up(searcher)
    uvicorn.run(create_app(searcher), host=ns.host, port=ns.port, log_config=None, access_log=False)
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
    except (ValueError, OSError) as err:  # FileNotFoundError: no runs there
        message = _os_error(err, None) if isinstance(err, OSError) and err.filename else str(err)
        print(f"gnn-mmsearch report: {message}", file=sys.stderr)
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
    parser.add_argument("-k", type=int, default=5, help="neighbours to show (0: only count the links)")
    parser.add_argument("--out", type=Path, help="PNG to write (default: explain_<result>.png)")
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def fail(msg: str) -> int:
        print(f"gnn-mmsearch explain: {msg}", file=sys.stderr)
        return 2

    from .query import check_image, parse_explain_query
    try:
        parse_explain_query(ns.query, ns.image, ns.product, ns.k)
        if ns.image is not None:
            check_image(ns.image)
    except ValueError as err:
        return fail(str(err))
    if ns.out is not None and not ns.out.parent.is_dir():
        return fail(f"--out {ns.out}: no such folder {ns.out.parent}")
    run_dir = ns.run or _newest_run()
    if run_dir is None:
        return fail("no saved search run found under ./runs: pass --run DIR")

    from .explain import explain
    try:
        ex = explain(run_dir, query=ns.query, product_id=ns.result, image=ns.image, product=ns.product, k=ns.k)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        return fail(err.args[0] if err.args else str(err))
    print(f"run: {run_dir}\n{ex.to_text()}")
    out = ns.out or Path(f"explain_{ex.product_id}.png")
    try:
        print(f"picture: {ex.plot(out)}")
    except OSError as err:
        return fail(f"cannot write {out}: {err.strerror or err}")
    return 0


def _download_images(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch download-images",
                                     description="Download product images to DIR/<id>.jpg (existing files are kept).")
    parser.add_argument("source", type=Path, help="a catalog directory built from Amazon data, or an Amazon meta file")
    parser.add_argument("--out", type=Path, required=True, help="image directory (then data.images_dir=DIR)")
    parser.add_argument("--format", choices=["2014", "2018", "2023"], help="the meta file's format (for a file)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent downloads")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a request (connection, headers and "
                        "body) may take in all")
    parser.add_argument("--retries", type=int, default=3, help="retries on timeouts, 5xx and truncated bodies")
    parser.add_argument("--report", type=Path, help="JSON report (default: DIR/download_report.json)")
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def fail(msg: str, code: int = 2) -> int:
        print(f"gnn-mmsearch download-images: {msg}", file=sys.stderr)
        return code

    if not ns.timeout > 0:
        return fail(f"--timeout must be above 0 seconds, got {ns.timeout:g}")
    if ns.workers < 1 or ns.retries < 0:
        return fail("--workers must be at least 1" if ns.workers < 1 else "--retries must be at least 0")
    if not (ns.source.is_dir() or ns.source.is_file() and ns.format):
        return fail(f"{ns.source}: " + ("--format is needed for a meta file" if ns.source.is_file()
                                         else "no such file or directory"))

    from ._atomic import write_json
    from .data.amazon_formats import format_mismatch
    from .data.download import DownloadInterrupted, catalog_image_urls, download_images, meta_image_urls
    report_path = ns.report or ns.out / "download_report.json"
    try:
        if ns.source.is_dir():
            items = list(catalog_image_urls(ns.source))
        else:
            looks_like = format_mismatch(ns.source, ns.format)
            if looks_like:
                return fail(f"{ns.source} does not read as --format {ns.format} metadata: it looks like --format "
                            f"{looks_like}")
            items = list(meta_image_urls(ns.source, ns.format))
            if not items:
                return fail(f"{ns.source}: no image URL in it (read as --format {ns.format})")
        report = download_images(items, ns.out, ns.workers, ns.timeout, ns.retries)
    except DownloadInterrupted as stopped:
        report = stopped.report
        write_json(report_path, report.as_dict())
        return fail(f"interrupted: {report.downloaded} downloaded, {report.not_done} not done; "
                    f"report: {report_path}", 130)
    except KeyboardInterrupt:
        return fail("interrupted before any download", 130)
    except OSError as err:  # FileNotFoundError: a catalog without image_urls.tsv; an --out that cannot be written
        return fail(_os_error(err, None) if err.filename else str(err))
    path = write_json(report_path, report.as_dict())
    failed = ", ".join(f"{reason}={n}" for reason, n in report.failed.items()) or "none"
    print(f"downloaded {report.downloaded}, skipped {report.skipped} (already on disk), "
          f"failed {sum(report.failed.values())} ({failed})\nreport: {path}")
    return 0


def _export_mmrec(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gnn-mmsearch export-mmrec",
        description="Amazon Reviews metadata + reviews -> an MMRec dataset folder: <name>.inter (userID itemID rating "
                    "timestamp x_label), u_id_mapping.csv / i_id_mapping.csv, image_feat.npy / text_feat.npy (row = "
                    "itemID) and feat_mask.npz (image / text: True where the item has the feature).",
        epilog="Then: gnn-mmsearch run task=recommend data.path=DIR/NAME.inter. Bad input (a missing file, a file of "
               "another format, nothing left after the k-core, an existing or unwritable --out) prints one line and "
               "exits 2; nothing is written unless the whole export is.")
    parser.add_argument("--format", required=True, help="2014 | 2018 | 2023")
    parser.add_argument("--meta", type=Path, required=True, help="metadata file (.json, .jsonl or .gz)")
    parser.add_argument("--reviews", type=Path, required=True, help="reviews file (.json, .jsonl or .gz)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to create (must not exist)")
    parser.add_argument("--name", help="dataset name: <out>/<name>.inter (default: the folder's name)")
    parser.add_argument("--images", type=Path, help="folder of <ASIN>.jpg images (gnn-mmsearch download-images)")
    parser.add_argument("--k-core", type=int, default=5, help="keep users and items with at least K interactions, "
                        "repeated until none changes (0 = off; default 5)")
    parser.add_argument("--split", default="0.8,0.1,0.1", help="train,valid,test ratios per user (default 0.8,0.1,0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-user shuffle (and of --cold-items)")
    parser.add_argument("--chronological", action="store_true", help="split each user's interactions by time: the "
                        "earliest train, the latest test")
    parser.add_argument("--cold-items", type=float, default=0.0, help="share of items whose interactions all go to "
                        "valid/test (cold-start items; default 0)")
    parser.add_argument("--image-model", default="tf_efficientnet_lite0", help="timm model (default: the offline "
                        "EfficientNet-Lite0)")
    parser.add_argument("--text-model", default="all-MiniLM-L6-v2", help="sentence-transformers model or path "
                        "(default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (feature extraction)")
    parser.add_argument("--no-features", action="store_true", help="write no feature files")
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def fail(msg: str) -> int:
        print(f"gnn-mmsearch export-mmrec: {msg}", file=sys.stderr)
        return 2

    from .data.mmrec_export import ExportOptions, FeatureOptions, export_amazon
    try:
        split = [float(s) for s in ns.split.split(",")]
    except ValueError:
        return fail(f"--split {ns.split!r}: expected three ratios like 0.8,0.1,0.1")
    try:
        options = ExportOptions(ns.k_core, split, ns.seed, ns.chronological, ns.cold_items)
        if not ns.no_features:
            from .device import resolve_device
            resolve_device(ns.device, "--device")
    except ValueError as err:
        return fail(str(err).replace("k_core", "--k-core").replace("cold_item_ratio", "--cold-items")
                    .replace("split", "--split", 1))
    cache = os.environ.get("GNN_MMSEARCH_CACHE", "~/.cache/gnn_mmsearch")
    features = None if ns.no_features else FeatureOptions(ns.image_model, ns.text_model, ns.device,
                                                           str(Path(cache).expanduser() / "features"))
    try:
        report = export_amazon(ns.format, ns.meta, ns.reviews, ns.out, ns.images, ns.name, options, features)
    except ValueError as err:
        return fail(str(err))
    except (OSError, RuntimeError) as err:  # an unwritable folder, a model that does not load
        return fail(_os_error(err, cache) if isinstance(err, OSError) and err.filename else str(err).splitlines()[0])
    print(f"{report.summary()}\nexported: {ns.out}")
    return 0


COMMANDS = {"run": _run, "search": _search, "serve": _serve, "report": _report, "explain": _explain,
            "download-images": _download_images, "export-mmrec": _export_mmrec}
